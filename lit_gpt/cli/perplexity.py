"""Loss and perplexity of a checkpoint on packed validation shards or on a text / JSONL file.

    # the validation loss the training run logged for this checkpoint (settings from its run_config.yaml)
    python scripts/perplexity.py --checkpoint out/tinyllama/checkpoints/step-000100000
    # any shards, with explicit settings
    python scripts/perplexity.py --checkpoint ckpt --data_dir data/slim_star --prefix validation_slimpajama \\
        --micro_batch_size 8 --num_batches 100
    # raw text: a .txt file is one document, a .jsonl file one document per line (its "text" field)
    python scripts/perplexity.py --checkpoint ckpt --text held_out.jsonl
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml

from lit_gpt.exit_codes import run_cli
from lit_gpt.training.option_checks import check_path


def run_config_of(checkpoint: Path) -> dict:
    """The run_config.yaml of the pretraining run a checkpoint belongs to ({out_dir}/checkpoints/step-N),
    or {} for a checkpoint made elsewhere."""
    path = checkpoint.resolve().parent.parent / "run_config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def perplexity(
    checkpoint: Path,
    text: Path | None = None,
    text_field: str = "text",
    data_dir: Path | None = None,
    prefix: str | None = None,
    block_size: int | None = None,
    micro_batch_size: int | None = None,
    num_batches: int | None = None,
    world_size: int | None = None,
    device: str = "auto",
    precision: Literal["bf16-mixed", "bf16-true", "32-true"] | None = None,
    tokenizer_dir: Path | None = None,
) -> dict:
    """Print and return {"loss", "perplexity", "tokens"}.

    Options left unset take the training run's values from the run_config.yaml two folders above a
    pretraining checkpoint, so that the shard numbers equal the validation loss the run logged.

    Args:
        checkpoint: a lit checkpoint folder, a .pth file, a pretraining checkpoint folder or a run folder (its
            newest whole checkpoint).
        text: score this file instead of shards: .jsonl / .jsonl.zst (one document per line) or any
            other file (one document). Documents are encoded BOS + tokens + EOS and concatenated.
        text_field: the JSONL field holding a document's text.
        data_dir: folder of the packed shards (run: data_dir).
        prefix: shard prefix, e.g. validation_slimpajama (run: val_prefix).
        block_size: tokens the model reads per window (default: the model's block_size).
        micro_batch_size: sequences per forward pass (run: micro_batch_size; default 8).
        num_batches: validation batches per rank (run: eval_batches; default 100).
        world_size: ranks the run validated on (run: devices x num_nodes; default 1).
        device: cpu, cuda, cuda:1, ... or auto (cuda when available).
        precision: as in training (run: precision; default bf16-mixed on a GPU with bf16, else 32-true).
        tokenizer_dir: tokenizer for `text` (default: the checkpoint's folder).
    """
    import torch  # here, not at the top: `--help` must not wait for torch

    from lit_gpt.evaluation.perplexity import (
        perplexity_on_shards,
        perplexity_on_text,
        read_documents,
        single_device_fabric,
    )
    from lit_gpt.inference import load_for_inference
    from lit_gpt.training.checkpointing import find_checkpoint

    check_path("checkpoint", checkpoint, "checkpoint")
    check_path("text", text, "file")
    check_path("data_dir", data_dir, "folder")
    check_path("tokenizer_dir", tokenizer_dir, "folder")
    checkpoint = find_checkpoint(checkpoint)
    run = run_config_of(checkpoint)
    fabric = single_device_fabric(device, precision or run.get("precision"))
    # float32 weights, as the training run keeps them, and its kernels: the precision decides the compute type
    loaded = load_for_inference(
        checkpoint, fabric.device, torch.float32, tokenizer_dir, require_tokenizer=text is not None, kernels=None
    )
    model = fabric.setup_module(loaded.model)
    block_size = block_size or loaded.config.block_size
    micro_batch_size = micro_batch_size or run.get("micro_batch_size") or 8
    if text is not None:
        result = perplexity_on_text(
            fabric, model, loaded.tokenizer, read_documents(text, text_field), block_size, micro_batch_size
        )
    else:
        data_dir = data_dir or run.get("data_dir")
        prefix = prefix or run.get("val_prefix")
        if data_dir is None or prefix is None:
            raise ValueError("give --text, or --data_dir and --prefix (no run_config.yaml found above the checkpoint)")
        world_size = world_size or int(run.get("devices", 1)) * int(run.get("num_nodes", 1))
        result = perplexity_on_shards(
            fabric,
            model,
            data_dir,
            prefix,
            block_size,
            micro_batch_size,
            num_batches or run.get("eval_batches") or 100,
            world_size,
        )
    print(json.dumps(result))
    return result


def main(argv=None) -> None:
    """`lit-perplexity` and `scripts/perplexity.py`."""
    run_cli(perplexity, argv)


if __name__ == "__main__":
    main()
