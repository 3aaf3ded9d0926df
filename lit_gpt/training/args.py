"""The options every training job shares (pretraining and fine-tuning extend them), and their parser."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

from jsonargparse import ActionConfigFile

from lit_gpt.config import RUNTIME_FIELDS
from lit_gpt.exit_codes import CommandParser

T = TypeVar("T")


@dataclass
class RunArgs:
    """Options shared by the training jobs. Options left at null take the job's recipe value.

    Args:
        out_dir: Where checkpoints, logs and the run config go.
        resume: "auto" resumes from the newest complete checkpoint in out_dir if there is one; a path
            resumes from that checkpoint; null starts afresh (and refuses an out_dir with checkpoints).
        seed: Seed of initialisation and of the data order.
        global_batch_size: Sequences (in fine-tuning: conversations) per optimizer step over all devices.
        micro_batch_size: Sequences per device per forward/backward; gradient accumulation is derived.
        max_steps: Optimizer steps to train.
        lr: Peak learning rate.
        min_lr: Learning rate at the end of the cosine decay.
        warmup_steps: Linear warmup, in optimizer steps.
        optimizer: "adamw", or "muon": Muon on the transformer blocks' weight matrices and AdamW on the
            embedding, head and norms; lr, weight_decay and the schedule carry over from AdamW (PRETRAIN.md,
            "Optimizer"). LoRA adapters train with adamw.
        allow_optimizer_change: Resume a checkpoint written with another --optimizer: the weights, step and data
            position carry on, the optimizer's state starts afresh (otherwise such a resume is refused).
        weight_decay: Decoupled weight decay (never applied to norm weights).
        beta1: AdamW beta1 (Muon's AdamW part too).
        beta2: AdamW beta2 (Muon's AdamW part too).
        grad_clip: Clip the global gradient norm to this (0: no clipping).
        log_interval: Log every N optimizer steps.
        eval_interval: Validate every N steps (and at the end).
        eval_interval_sec: Also validate whenever this many seconds of training (validation and saving not
            counted) have passed since the last validation (0: by steps only). The log's `train_sec` is that clock.
        save_interval: Checkpoint every N steps (and at the end and on SIGTERM/SIGINT).
        keep_last: Keep only the newest K checkpoints, K >= 1 (null: keep all).
        async_checkpoint: Write the interval checkpoints while training goes on: the state is copied to
            CPU memory (pinned on GPUs) and a thread writes it; it completes (renamed into place) as soon
            as it is written, and the next save, the end of the run and a SIGTERM's save wait for that.
            Costs host memory for one copy of the model and optimizer state (of this rank's shard).
        max_consecutive_nonfinite: Stop (after saving) when this many steps in a row are non-finite.
        accelerator: "auto", "cuda" or "cpu".
        devices: Devices per node.
        num_nodes: Nodes.
        strategy: "auto" (one device: single, more: fsdp), "single", "ddp" or "fsdp" (FSDP2).
        precision: "bf16-mixed", "bf16-true" or "32-true" (null: bf16-mixed on GPUs with bf16, else 32-true).
        cpu_offload: FSDP2 only: keep parameters, gradients and optimizer state in CPU memory.
        activation_checkpointing: Recompute activations in the backward pass to save memory: "none",
            "block" (whole transformer blocks) or "mlp" (only their MLPs).
        compile: torch.compile each transformer block (null: on when training on CUDA GPUs, off on CPUs).
        float8: Matmuls of the transformer blocks' linears in float8 (torchao): "tensorwise" (fastest) or
            "rowwise"; null trains in `precision` alone. Needs torchao and a GPU with float8 tensor cores
            (on a CPU torchao emulates it, slowly). Checkpoints stay in the ordinary format.
        float8_min_features: float8 only for linears whose both dimensions are at least this (smaller
            ones lose more to the casts than they gain).
        kernels: Override the model config's kernels backend ("auto", "torch", "triton", "liger", "quack").
        attention: Override the model config's attention kernel: "auto" (flash-attn-4 where it can run, the
            fastest measured; else SDPA, and FlexAttention for the document mask on GPUs), "sdpa", "flex" or
            "fa4" (flash-attn-4, an optional extra: Hopper and newer, bf16).
        tensorboard: Also log to TensorBoard.
        wandb_project: Also log to Weights & Biases under this project (offline unless wandb_online).
        wandb_online: Sync W&B logs to the server.
    """

    out_dir: Path | None = None
    resume: str | None = "auto"
    seed: int = 42
    global_batch_size: int | None = None
    micro_batch_size: int | None = None
    max_steps: int | None = None
    lr: float | None = None
    min_lr: float | None = None
    warmup_steps: int | None = None
    optimizer: Literal["adamw", "muon"] | None = None
    allow_optimizer_change: bool = False
    weight_decay: float | None = None
    beta1: float | None = None
    beta2: float | None = None
    grad_clip: float | None = None
    log_interval: int | None = None
    eval_interval: int | None = None
    eval_interval_sec: float = 0.0
    save_interval: int | None = None
    keep_last: int | None = None
    async_checkpoint: bool = False
    max_consecutive_nonfinite: int = 10
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: Literal["auto", "single", "ddp", "fsdp"] = "auto"
    precision: Literal["bf16-mixed", "bf16-true", "32-true"] | None = None
    cpu_offload: bool = False
    activation_checkpointing: Literal["none", "block", "mlp"] = "none"
    compile: bool | None = None
    float8: Literal["tensorwise", "rowwise"] | None = None
    float8_min_features: int = 1024
    kernels: str | None = None
    attention: Literal["auto", "sdpa", "flex", "fa4"] | None = None
    tensorboard: bool = True
    wandb_project: str | None = None
    wandb_online: bool = False


def recipe_note(name: str, recipes: dict[str, dict[str, Any]]) -> str | None:
    """What option `name` takes from each recipe when left unset, e.g. "(TinyLlama recipe: 8; demo: 8)"."""
    values = [f"{label}: {_shown(recipe[name])}" for label, recipe in recipes.items() if name in recipe]
    return f"(when unset, {'; '.join(values)})" if values else None


def _shown(value: Any) -> str:
    if value is None:
        return "derived"  # the job computes it (e.g. loader workers from the CPUs per rank)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def parse_args(
    cls: type[T],
    description: str,
    argv: Sequence[str] | None = None,
    recipes: dict[str, dict[str, Any]] | None = None,
) -> T:
    """Flags (and a YAML `--config`) for every field of the dataclass `cls`. `recipes` (label -> option ->
    value) adds to each option's help the value every recipe gives it when it is left unset."""
    parser = CommandParser(description=description, default_config_files=[])
    parser.add_argument("--config", action=ActionConfigFile, help="A YAML file of these options.")
    parser.add_class_arguments(cls, nested_key=None, as_group=False)
    for action in parser._actions:  # jsonargparse has no public hook for per-option help
        note = recipe_note(action.dest, recipes or {})
        if note:
            action.help = f"{action.help or ''} {note}".strip()
    ns = parser.parse_args(argv)
    return cls(**{f.name: getattr(ns, f.name) for f in fields(cls)})


def runtime_overrides(args: RunArgs) -> dict[str, Any]:
    """The model-config fields a run's flags override: the kernels, not what the weights mean."""
    return {name: getattr(args, name) for name in RUNTIME_FIELDS if getattr(args, name)}
