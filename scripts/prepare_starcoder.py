"""Tokenize Starcoderdata (`{language}/train-*.parquet`, column `content`) into packed shards `{prefix}_*.bin`.

The command lives in lit_gpt/cli/prepare_starcoder.py (installed also as `lit-prepare-starcoder`); this file runs it
from a checkout installed with `pip install -e .`.
"""

from lit_gpt.cli.prepare_starcoder import main

if __name__ == "__main__":
    main()
