"""Tokenize your own corpus into packed shards `train_{source}_*.bin` (and `validation_{source}_*.bin`).

The command lives in lit_gpt/cli/prepare_corpus.py (installed also as `lit-prepare-corpus`); this file runs it
from a checkout installed with `pip install -e .`.
"""

from lit_gpt.cli.prepare_corpus import main

if __name__ == "__main__":
    main()
