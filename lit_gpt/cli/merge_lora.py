"""Fold a LoRA fine-tuning checkpoint's adapter into its base weights: a lit checkpoint folder that
converts to Hugging Face (scripts/convert_lit_checkpoint.py) and GGUF (scripts/convert_to_gguf.py).

    python scripts/merge_lora.py --checkpoint out/sft_lora/checkpoints/step-000000500 --output_dir out/sft_lora/merged
"""

from __future__ import annotations

from pathlib import Path

from lit_gpt.exit_codes import run_cli
from lit_gpt.training.option_checks import check_path


def merge_lora(checkpoint: Path, output_dir: Path, base: Path | None = None) -> None:
    """Write the merged model.

    Args:
        checkpoint: a LoRA fine-tuning checkpoint folder (step-N, written by sft/finetune.py --method lora).
        output_dir: the lit checkpoint folder to write (weights, model_config.yaml, tokenizer, chat template).
        base: the base weights, when they moved since training (default: the path the checkpoint records).
    """
    from lit_gpt.lora import merge_checkpoint  # here, not at the top: `--help` must not wait for torch

    check_path("checkpoint", checkpoint, "folder")
    check_path("output_dir", output_dir, "output folder")
    check_path("base", base, "checkpoint")
    merge_checkpoint(checkpoint, output_dir, base)
    print(f"wrote {output_dir}; convert it with scripts/convert_lit_checkpoint.py or scripts/convert_to_gguf.py")


def main(argv=None) -> None:
    """`lit-merge-lora` and `scripts/merge_lora.py`."""
    run_cli(merge_lora, argv)


if __name__ == "__main__":
    main()
