"""The options of a fine-tuning run (the recipes that fill the unset ones are the command's:
lit_gpt/cli/recipes). Kept free of torch: `lit-finetune --help` reads them without loading the training machinery."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lit_gpt.training.args import RunArgs
from lit_gpt.training.option_checks import (
    FRACTION,
    RUN_RANGES,
    above,
    at_least,
    check_path,
    check_ranges,
    check_run_paths,
)


@dataclass
class FinetuneArgs(RunArgs):
    """Options of a fine-tuning run. Options left at null take the recipe's value: the demo recipe when
    --checkpoint is not given (fine-tune the demo pretraining run's newest checkpoint on the chat
    sample shipped with the package), the TinyLlama chat recipe otherwise.

    Args:
        checkpoint: Weights to start from: a lit checkpoint folder or .pth file, a pretraining checkpoint
            folder (step-N), a run folder (its newest checkpoint is taken) or a Hugging Face folder.
        tokenizer_dir: Tokenizer folder (default: the checkpoint's folder).
        data: A .jsonl/.json file or a folder of them (formats: SFT.md). Null: the chat sample shipped with the package.
        data_format: "auto" (read off each file's first record), "chat", "guanaco" or "alpaca".
        val_data: Validation file or folder; null holds out `val_fraction` of the training conversations.
        val_fraction: Share of the conversations held out for validation when val_data is null (0: none).
        template: Chat template: "guanaco", "chatml" or "zephyr".
        skip_bad: Skip (and count) bad records instead of stopping at the first one.
        max_seq_length: Longest input in tokens (default: the model's block size).
        overlong: What to do with a longer conversation: "truncate" it or "drop" it (counted either way).
        epochs: Passes over the training conversations (ignored when max_steps is given).
        warmup_fraction: Warmup as a share of all steps, when warmup_steps is null.
        method: "full" (every weight trains), "lora" (low-rank adapters on frozen weights; checkpoints hold
            the adapter alone: fold it in with scripts/merge_lora.py) or "qlora" (LoRA over a 4-bit NF4 base
            through bitsandbytes; one CUDA device).
        lora_r: LoRA rank.
        lora_alpha: LoRA scale numerator (the update is scaled by alpha / r).
        lora_dropout: Dropout on the adapters' input.
        lora_targets: Linears that get adapters, among attn.qkv, attn.proj, mlp.fc_gate, mlp.fc_up, mlp.proj
            (null: all of them).
        packed: Pack whole conversations into full rows of max_seq_length tokens (attention kept inside
            each conversation) instead of length-bucketed, padded batches; global_batch_size then counts rows.
    """

    checkpoint: Path | None = None
    tokenizer_dir: Path | None = None
    data: Path | None = None
    data_format: Literal["auto", "chat", "guanaco", "alpaca"] = "auto"
    val_data: Path | None = None
    val_fraction: float = 0.05
    template: Literal["guanaco", "chatml", "zephyr"] = "zephyr"
    skip_bad: bool = False
    max_seq_length: int | None = None
    overlong: Literal["truncate", "drop"] = "truncate"
    epochs: float | None = None
    warmup_fraction: float = 0.03
    method: Literal["full", "lora", "qlora"] = "full"
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    lora_targets: list[str] | None = None
    packed: bool = False


FINETUNE_RANGES = {
    **RUN_RANGES,
    "val_fraction": FRACTION,
    "max_seq_length": at_least(1),
    "epochs": above(0),
    "warmup_fraction": FRACTION,
    "lora_alpha": above(0),  # LoRASettings checks the rank, the dropout and the targets
}


def check_finetune_options(args: FinetuneArgs) -> None:
    """Raise for options out of range, paths of the wrong kind, adapter settings LoRA refuses and QLoRA on a
    machine without its GPU, before Fabric starts and the checkpoint loads (`args` as given: those left unset
    take the recipe's values, which are valid)."""
    import torch  # here, not at the top: `lit-finetune --help` must not wait for torch

    from lit_gpt.lora import check_qlora_available
    from lit_gpt.sft.finetune import lora_settings

    check_ranges(args, FINETUNE_RANGES)
    check_run_paths(args)
    check_path("checkpoint", args.checkpoint, "checkpoint")
    check_path("tokenizer_dir", args.tokenizer_dir, "folder")
    check_path("data", args.data, "file or folder")
    check_path("val_data", args.val_data, "file or folder")
    lora_settings(args)
    if args.method == "qlora":
        on_gpu = args.accelerator != "cpu" and torch.cuda.is_available()
        check_qlora_available(torch.device("cuda" if on_gpu else "cpu"))
