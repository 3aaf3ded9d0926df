"""Convert a Hugging Face Llama checkpoint folder into a lit checkpoint folder.

The command lives in lit_gpt/cli/convert_hf.py (installed also as `lit-convert-hf`); this file runs it
from a checkout installed with `pip install -e .`.
"""

from lit_gpt.cli.convert_hf import main

if __name__ == "__main__":
    main()
