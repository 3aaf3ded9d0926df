"""Fold a LoRA fine-tuning checkpoint's adapter into its base weights: a lit checkpoint folder that
converts to Hugging Face (scripts/convert_lit_checkpoint.py) and GGUF (scripts/convert_to_gguf.py).

    python scripts/merge_lora.py --checkpoint out/sft_lora/checkpoints/step-000000500 --output_dir out/sft_lora/merged

The adapter is merged only onto the base weights it was trained on: the fine-tuning run records their
SHA-256, and other weights (another model of the same shape, or the same file changed since) are refused
unless `--allow_other_base true`.
"""

from __future__ import annotations

from pathlib import Path

from lit_gpt.exit_codes import run_cli
from lit_gpt.training.option_checks import check_path


def merge_lora(checkpoint: Path, output_dir: Path, base: Path | None = None, allow_other_base: bool = False) -> None:
    """Write the merged model: every adapted weight W becomes W + (alpha / r) B A.

    Args:
        checkpoint: a LoRA fine-tuning checkpoint folder (step-N under the run's checkpoints/, written by
            sft/finetune.py --method lora or qlora). It holds the adapter alone, the run's settings (rank,
            alpha, targets), the model config, the tokenizer and the chat template.
        output_dir: the lit checkpoint folder to write: lit_model.pth with the merged weights,
            model_config.yaml, the tokenizer and the chat template, ready for the Hugging Face and GGUF
            converters, sft/chat.py and the server.
        base: the base weights the adapter was trained on (a lit checkpoint folder or .pth file, or a
            Hugging Face folder), when they moved since training. Default: the path the checkpoint
            records. Whatever the path, the weights must be the ones the adapter was trained on: their
            SHA-256 is compared with the one the checkpoint records. It is taken over the values, so a
            copy in another format (a Hugging Face folder) or in a dtype that holds them exactly matches.
        allow_other_base: merge even when the base holds other weights than those the adapter was trained
            on (the merged model is then one nobody trained or evaluated; a warning says so). Checkpoints
            written before the base was recorded are merged with a warning either way.
    """
    from lit_gpt.lora import merge_checkpoint  # here, not at the top: `--help` must not wait for torch

    check_path("checkpoint", checkpoint, "folder")
    check_path("output_dir", output_dir, "output folder")
    check_path("base", base, "checkpoint")
    merge_checkpoint(checkpoint, output_dir, base, allow_other_base)
    print(f"wrote {output_dir}; convert it with scripts/convert_lit_checkpoint.py or scripts/convert_to_gguf.py")


def main(argv=None) -> None:
    """`lit-merge-lora` and `scripts/merge_lora.py`: a refused base or a missing file ends in one line, exit 2."""
    run_cli(merge_lora, argv)


if __name__ == "__main__":
    main()
