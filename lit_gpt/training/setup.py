"""Building a run: Fabric with its strategy and loggers, the model placed on it, and weights to
start from. Shared by pretraining and fine-tuning."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import lightning as L
import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

from lit_gpt.attention import check as check_attention
from lit_gpt.attention import startup_line
from lit_gpt.config import Config
from lit_gpt.model import GPT
from lit_gpt.training.args import RunArgs
from lit_gpt.training.float8 import check_float8
from lit_gpt.training.metrics import CSVMetricsLogger
from lit_gpt.training.parallel import build_fabric_strategy, prepare_unsharded, resolve_strategy, unwrap


def resolved_precision(args: RunArgs) -> str:
    """`--precision`, or where null bf16-mixed on a device with bf16, else 32-true."""
    if args.precision is not None:
        return args.precision
    return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"


def build_fabric(args: RunArgs) -> tuple[L.Fabric, str]:
    """Fabric for one run and the strategy kind chosen ("single", "ddp" or "fsdp"). Precision null picks
    bf16-mixed where the device supports bf16, else 32-true."""
    check_float8(args.float8, args.accelerator)
    precision = resolved_precision(args)
    if args.attention in ("fa4", "flex"):  # before any data work; setup_model checks the model config's too
        on_gpu = args.accelerator in ("auto", "cuda", "gpu") and torch.cuda.is_available()
        dtype = torch.float32 if precision == "32-true" else torch.bfloat16
        check_attention(args.attention, False, torch.device("cuda" if on_gpu else "cpu"), dtype)
    out_dir = Path(args.out_dir)
    kind = resolve_strategy(args.strategy, args.devices, args.num_nodes)
    fabric_strategy, fabric_precision = build_fabric_strategy(
        kind,
        precision,
        cpu_offload=args.cpu_offload,
        activation_checkpointing=args.activation_checkpointing,
        compile=compile_enabled(args),
        float8=args.float8,
        float8_min_features=args.float8_min_features,
    )
    loggers: list = [CSVMetricsLogger(out_dir)]
    if args.tensorboard:
        from lightning.fabric.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(root_dir=out_dir, name="tensorboard", version=""))
    if args.wandb_project:
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(project=args.wandb_project, save_dir=str(out_dir), offline=not args.wandb_online))
    fabric = L.Fabric(
        accelerator=args.accelerator,
        devices=args.devices,
        num_nodes=args.num_nodes,
        strategy=fabric_strategy,
        precision=fabric_precision,
        loggers=loggers,
    )
    return fabric, kind


def launch(fabric: L.Fabric) -> None:
    """Start the other processes, unless `fabric run` has started them already (Fabric then refuses a
    second launch)."""
    from lightning.fabric.connector import _is_using_cli

    if not _is_using_cli():
        fabric.launch()


def compile_enabled(args: RunArgs) -> bool:
    """`--compile` as given, or by default on whenever the run is on CUDA GPUs (measured faster there:
    benchmarks/RESULTS.md); off on CPUs, where compiling costs more than it saves in short runs."""
    if args.compile is not None:
        return args.compile
    return args.accelerator in ("auto", "cuda", "gpu") and torch.cuda.is_available()


def setup_model(
    fabric: L.Fabric,
    config: Config,
    args: RunArgs,
    sharded: bool,
    initial_state: dict[str, torch.Tensor] | None = None,
    transform: Callable[[GPT], object] | None = None,
):
    """Build the model the way the strategy wants it (meta-device init under FSDP2), initialise it with
    the TinyLlama init, apply float8, activation checkpointing and compilation as `args` ask (under FSDP2
    the strategy's parallelize function does), optionally overwrite it with `initial_state` (full,
    unsharded weights), and hand it to Fabric. `transform` changes the freshly built model first (e.g.
    adds LoRA adapters)."""
    compute_dtype = torch.float32 if resolved_precision(args) == "32-true" else torch.bfloat16
    # "auto" is decided here, once: the model is built with the concrete kernel
    where = (config.document_mask, fabric.device, compute_dtype, config.head_size)
    choice = check_attention(config.attention, *where)
    fabric.print(startup_line(config.attention, choice, *where))
    config = replace(config, attention=choice)
    with fabric.init_module(empty_init=sharded):
        model = GPT(config)
        if transform is not None:
            transform(model)
    if not sharded:
        prepare_unsharded(
            model,
            fabric.device,
            args.activation_checkpointing,
            compile_enabled(args),
            float8=args.float8,
            float8_min_features=args.float8_min_features,
        )
    model = fabric.setup_module(model)
    if initial_state is not None:
        # full weights, loaded by every rank; FSDP2 keeps only each rank's shard
        set_model_state_dict(unwrap(model), initial_state, options=StateDictOptions(full_state_dict=True, strict=True))
    return model
