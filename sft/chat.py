"""Chat with a fine-tuned model in the terminal: multi-turn, streamed, with an optional system prompt.

The command lives in lit_gpt/cli/chat.py (installed also as `lit-chat`); this file runs it
from a checkout installed with `pip install -e .`.
"""

from lit_gpt.cli.chat import main

if __name__ == "__main__":
    main()
