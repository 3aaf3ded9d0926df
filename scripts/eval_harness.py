"""Score a lit checkpoint on lm-evaluation-harness tasks and print a table.

The command lives in lit_gpt/cli/evaluate.py (installed also as `lit-evaluate`); this file runs it
from a checkout installed with `pip install -e .`.
"""

from lit_gpt.cli.evaluate import main

if __name__ == "__main__":
    main()
