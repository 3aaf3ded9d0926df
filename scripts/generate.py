"""Sample text from a checkpoint, printing it as the tokens arrive.

The command lives in lit_gpt/cli/generate.py (installed also as `lit-generate`); this file runs it
from a checkout installed with `pip install -e .`.
"""

from lit_gpt.cli.generate import main

if __name__ == "__main__":
    main()
