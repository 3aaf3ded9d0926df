"""Verify prepared shards against their manifests: every listed shard present, of the recorded size, and
with the recorded SHA-256 (every byte is read: minutes per 100 GB). Exit 0 when all match, 2 naming the
first damaged or missing shard.

The command lives in lit_gpt/cli/verify_data.py (installed also as `lit-verify-data`); this file runs it
from a checkout installed with `pip install -e .`.
"""

from lit_gpt.cli.verify_data import main

if __name__ == "__main__":
    main()
