"""Tokenize SlimPajama (`{split}/chunk*/example_*.jsonl.zst`) into packed shards `{prefix}_*.bin`.

The command lives in lit_gpt/cli/prepare_slimpajama.py (installed also as `lit-prepare-slimpajama`); this file runs it
from a checkout installed with `pip install -e .`.
"""

from lit_gpt.cli.prepare_slimpajama import main

if __name__ == "__main__":
    main()
