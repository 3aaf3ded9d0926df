"""Loss and perplexity of a checkpoint on packed validation shards or on a text / JSONL file.

The command lives in lit_gpt/cli/perplexity.py (installed also as `lit-perplexity`); this file runs it
from a checkout installed with `pip install -e .`.
"""

from lit_gpt.cli.perplexity import main

if __name__ == "__main__":
    main()
