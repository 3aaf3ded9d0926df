"""Ask a fine-tuned model one question and print the answer as it streams.

The command lives in lit_gpt/cli/simple_inference.py (installed also as `lit-ask`); this file runs it
from a checkout installed with `pip install -e .`.
"""

from lit_gpt.cli.simple_inference import main

if __name__ == "__main__":
    main()
