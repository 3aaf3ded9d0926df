"""Fold a LoRA fine-tuning checkpoint's adapter into its base weights: a lit checkpoint folder that
converts to Hugging Face (scripts/convert_lit_checkpoint.py) and GGUF (scripts/convert_to_gguf.py).

The command lives in lit_gpt/cli/merge_lora.py (installed also as `lit-merge-lora`); this file runs it
from a checkout installed with `pip install -e .`.
"""

from lit_gpt.cli.merge_lora import main

if __name__ == "__main__":
    main()
