"""Every pretraining option checked before any work (data preparation, tokenizer training, process
launch): a bad option fails in well under a second with one line that names it."""

from __future__ import annotations

from pathlib import Path

from lit_gpt.config import PRESETS, Config
from lit_gpt.training.schedule import plan_batches, schedule_from_options


def check_pretrain_options(args) -> None:
    """Raise ValueError/FileNotFoundError for options that cannot work together, given resolved `args`."""
    for name in ("data_dir", "tokenizer_dir"):
        folder = getattr(args, name)
        if folder is not None and not Path(folder).is_dir():
            raise FileNotFoundError(f"--{name} {folder}: no such folder")
    if args.initial_checkpoint is not None and not Path(args.initial_checkpoint).exists():
        raise FileNotFoundError(f"--initial_checkpoint {args.initial_checkpoint}: not found")
    if args.model_name and args.model_config:
        raise ValueError("give one of --model_name and --model_config, not both")
    config = None
    if args.model_config is not None:
        config = Config.from_file(args.model_config)  # names the file and the field on error
    elif args.model_name and not args.initial_checkpoint:
        if args.model_name not in PRESETS:
            Config.from_name(args.model_name)  # raises with the close matches
        config = Config.from_name(args.model_name)
    for name in ("micro_batch_size", "log_interval", "eval_batches", "num_workers", "eval_interval", "save_interval"):
        value = getattr(args, name, None)
        if value is not None and value < (1 if name in ("micro_batch_size", "log_interval") else 0):
            raise ValueError(f"--{name} {value} is out of range")
    block_size = config.block_size if config is not None else None
    if block_size is not None:
        world = args.devices * args.num_nodes if isinstance(args.devices, int) else None
        if world:
            plan_batches(args.micro_batch_size, world, block_size, args.global_batch_size, args.global_batch_tokens)
    if args.max_tokens is None:
        if args.max_steps is None or args.max_steps < 1:
            raise ValueError(f"--max_steps {args.max_steps}: need at least one step")
        try:
            schedule_from_options(args, args.max_steps)
        except ValueError as e:
            raise ValueError(
                f"learning-rate schedule: {e} (set --lr_schedule, --warmup_steps, --max_steps, --lr, "
                f"--min_lr, --decay_steps)"
            ) from None
