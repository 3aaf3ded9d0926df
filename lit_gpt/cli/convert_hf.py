"""Convert a Hugging Face Llama checkpoint folder into a lit checkpoint folder.

python scripts/convert_hf_checkpoint.py --checkpoint_dir HF_FOLDER --output_dir LIT_FOLDER [--dtype bfloat16]
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from lit_gpt.exit_codes import run_cli
from lit_gpt.training.option_checks import check_path


def convert_hf_checkpoint(
    checkpoint_dir: Path, output_dir: Path, dtype: Literal["bfloat16", "float16", "float32"] | None = None
) -> None:
    """Write lit_model.pth, model_config.yaml and the tokenizer files (when the folder has them).

    Args:
        checkpoint_dir: folder with config.json and safetensors or pytorch_model*.bin weights.
        output_dir: the lit checkpoint folder to write.
        dtype: cast the weights to this type (default: keep the stored type).
    """
    from lit_gpt.checkpoint import DTYPES, convert_hf_to_lit  # here, not at the top: `--help` must not wait for torch

    check_path("checkpoint_dir", checkpoint_dir, "folder")
    check_path("output_dir", output_dir, "output folder")
    config = convert_hf_to_lit(checkpoint_dir, output_dir, DTYPES[dtype] if dtype else None)
    print(f"wrote {output_dir} ({config.n_layer} layers, vocab {config.padded_vocab_size})")


def main(argv=None) -> None:
    """`lit-convert-hf` and `scripts/convert_hf_checkpoint.py`."""
    run_cli(convert_hf_checkpoint, argv)


if __name__ == "__main__":
    main()
