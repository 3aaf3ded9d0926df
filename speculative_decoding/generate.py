"""Speculative decoding from the command line, timed against target-only decoding in the same run.

The command lives in lit_gpt/cli/speculative.py (installed also as `lit-speculative`); this file runs it
from a checkout installed with `pip install -e .`.
"""

from lit_gpt.cli.speculative import main

if __name__ == "__main__":
    main()
