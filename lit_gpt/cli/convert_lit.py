"""Convert a lit checkpoint (folder, .pth file or pretraining DCP folder) into a Hugging Face Llama folder.

    python scripts/convert_lit_checkpoint.py --checkpoint out/run --output_dir hf_model      # newest checkpoint
    python scripts/convert_lit_checkpoint.py --checkpoint out/run/checkpoints/step-000010000 --output_dir hf_model \\
        --tokenizer_dir checkpoints/tokenizer --dtype bfloat16
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from lit_gpt.exit_codes import run_cli
from lit_gpt.training.option_checks import check_path


def convert_lit_checkpoint(
    checkpoint: Path,
    output_dir: Path,
    dtype: Literal["bfloat16", "float16", "float32"] | None = None,
    tokenizer_dir: Path | None = None,
    model_config: Path | None = None,
    max_shard_size: str = "5GB",
) -> None:
    """Write config.json, generation_config.json, safetensors weights and the tokenizer files.

    Args:
        checkpoint: a lit checkpoint folder, a .pth file, a torch.distributed.checkpoint folder, or a run
            folder (its newest whole checkpoint).
        output_dir: the Hugging Face folder to write.
        dtype: weight type in the output (default: the checkpoint's).
        tokenizer_dir: tokenizer to ship with the model (default: the checkpoint's folder, if it has one); the
            chat template the checkpoint was fine-tuned with goes along either way.
        model_config: model_config.yaml to use instead of the one beside the checkpoint.
        max_shard_size: split the weights into files of at most this size, e.g. 2GB.
    """
    from lit_gpt.checkpoint import DTYPES, convert_lit_to_hf  # here, not at the top: `--help` must not wait for torch
    from lit_gpt.config import Config

    check_path("checkpoint", checkpoint, "checkpoint")
    check_path("output_dir", output_dir, "output folder")
    check_path("tokenizer_dir", tokenizer_dir, "folder")
    check_path("model_config", model_config, "file")
    shipped = convert_lit_to_hf(
        checkpoint,
        output_dir,
        DTYPES[dtype] if dtype else None,
        tokenizer_dir,
        Config.from_file(model_config) if model_config else None,
        max_shard_size,
    )
    print(f"wrote {output_dir}" + ("" if shipped else " (no tokenizer: pass --tokenizer_dir to include one)"))


def main(argv=None) -> None:
    """`lit-convert-lit` and `scripts/convert_lit_checkpoint.py`."""
    run_cli(convert_lit_checkpoint, argv)


if __name__ == "__main__":
    main()
