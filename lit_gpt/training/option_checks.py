"""Options checked before any work (data preparation, tokenizer training, process launch, model loading): a
bad option fails in well under a second with one line that names it. The path checks serve every command,
the range checks the training jobs (fine-tuning's own: lit_gpt/sft/finetune_args.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import yaml

from lit_gpt.config import PRESETS, Config
from lit_gpt.training.schedule import plan_batches, schedule_from_options

PathKind = Literal["folder", "file", "file or folder", "checkpoint", "output folder", "output file"]
WEIGHT_FILE_SUFFIXES = (".pth", ".pt")  # a checkpoint given as a file: lit weights saved by torch.save


def check_path(option: str, path: str | Path | None, kind: PathKind) -> None:
    """Raise, naming `--option`, when `path` cannot be what the option takes: an existing folder, file, or
    either; a checkpoint (a folder, or a weights file beside its model_config.yaml); or where a folder or a file is to
    be written (absent, or of that kind). None (the option left unset) passes."""
    if path is None:
        return
    p, given = Path(path), f"--{option} {path}"
    if not kind.startswith("output") and not p.exists():
        raise FileNotFoundError(f"{given}: no such {'file or folder' if kind == 'checkpoint' else kind}")
    if kind in ("folder", "output folder") and p.exists() and not p.is_dir():
        raise NotADirectoryError(f"{given}: a file, where a folder is expected")
    if kind in ("file", "output file") and p.is_dir():
        raise IsADirectoryError(f"{given}: a folder, where a file is expected")
    if kind == "output file" and p.parent.exists() and not p.parent.is_dir():
        raise NotADirectoryError(f"{given}: {p.parent} is a file, not a folder")
    if kind == "checkpoint" and p.is_file() and p.suffix not in WEIGHT_FILE_SUFFIXES:
        raise ValueError(
            f"{given}: a file that is not a weights file ({', '.join(WEIGHT_FILE_SUFFIXES)}); give a checkpoint "
            f"folder, a run folder or a lit_model.pth"
        )
    if kind == "checkpoint" and p.is_dir() and _fine_tuning_method(p) in ("lora", "qlora"):
        raise ValueError(
            f"{given}: a LoRA fine-tuning {'checkpoint' if (p / 'train_state.json').is_file() else 'run'}, "
            f"whose checkpoints hold the adapter alone: fold it into its base weights with `lit-merge-lora "
            f"--checkpoint STEP_FOLDER --output_dir MERGED` and give the merged folder"
        )


def _fine_tuning_method(folder: Path) -> str | None:
    """The `method` a fine-tuning checkpoint (its train_state.json) or run folder (its run_config.yaml)
    records; None for anything else."""
    try:
        if (folder / "train_state.json").is_file():
            return (json.loads((folder / "train_state.json").read_text()).get("config") or {}).get("method")
        if (folder / "run_config.yaml").is_file():
            return (yaml.safe_load((folder / "run_config.yaml").read_text()) or {}).get("method")
    except (ValueError, yaml.YAMLError, AttributeError):
        return None  # a damaged record: the loader names it
    return None


def at_least(low: float) -> tuple[Callable[[float], bool], str]:
    return (lambda v: v >= low), f"at least {low}"


def above(low: float) -> tuple[Callable[[float], bool], str]:
    return (lambda v: v > low), f"above {low}"


FRACTION = ((lambda v: 0 <= v < 1), "in [0, 1)")
_SEED = ((lambda v: 0 <= v < 2**32), "in [0, 2**32)")  # what numpy's seeding takes

# option -> (test, what it must be); an option left unset (None) is not checked
RUN_RANGES = {
    "seed": _SEED,
    "global_batch_size": at_least(1),
    "micro_batch_size": at_least(1),
    "max_steps": at_least(1),
    "lr": above(0),
    "min_lr": at_least(0),
    "warmup_steps": at_least(0),
    "weight_decay": at_least(0),
    "beta1": FRACTION,
    "beta2": FRACTION,
    "grad_clip": at_least(0),
    "log_interval": at_least(1),
    "eval_interval": at_least(0),
    "eval_interval_sec": at_least(0),
    "save_interval": at_least(0),
    "keep_last": at_least(1),  # null keeps every checkpoint; 0 would keep none, not even the newest
    "max_consecutive_nonfinite": at_least(1),
    "devices": at_least(1),
    "num_nodes": at_least(1),
    "float8_min_features": at_least(0),
}
PRETRAIN_RANGES = {
    **RUN_RANGES,
    "global_batch_tokens": at_least(1),
    "max_tokens": at_least(1),
    "eval_batches": at_least(0),
    "num_workers": at_least(0),
    "shuffle_buffer_files": at_least(1),
    "eval_tasks_interval": at_least(0),
    "eval_tasks_limit": at_least(1),
    "decay_steps": at_least(1),
    "decay_fraction": ((lambda v: 0 < v <= 1), "in (0, 1]"),
}


def check_ranges(args, ranges: dict[str, tuple[Callable[[float], bool], str]]) -> None:
    """Raise ValueError naming the first option of `args` outside its range in `ranges`."""
    for name, (valid, expected) in ranges.items():
        value = getattr(args, name, None)
        if value is not None and not valid(value):
            raise ValueError(f"--{name} {value} is out of range: it must be {expected}")


def check_run_paths(args) -> None:
    """The paths every training job takes: `out_dir` a folder to write, `resume` a checkpoint folder."""
    check_path("out_dir", getattr(args, "out_dir", None), "output folder")
    if getattr(args, "resume", None) not in (None, "auto"):
        check_path("resume", args.resume, "folder")


def check_pretrain_options(args) -> None:
    """Raise ValueError/FileNotFoundError for options that cannot work together, given resolved `args`."""
    check_ranges(args, PRETRAIN_RANGES)
    check_run_paths(args)
    for name in ("data_dir", "tokenizer_dir"):
        check_path(name, getattr(args, name), "folder")
    check_path("initial_checkpoint", args.initial_checkpoint, "checkpoint")
    check_path("model_config", args.model_config, "file")
    if getattr(args, "train_sources", ()) is None:  # the small recipe trains on the sources named
        found = sorted(p.name.removesuffix(".manifest.json") for p in Path(args.data_dir).glob("*.manifest.json"))
        raise ValueError(
            "name the training data: --train_sources '{\"PREFIX\": 1.0}' (and --val_prefix PREFIX to validate); "
            f"prefixes prepared in {args.data_dir}: {', '.join(found) or 'none'}"
        )
    if args.model_name and args.model_config:
        raise ValueError("give one of --model_name and --model_config, not both")
    config = None
    if args.model_config is not None:
        config = Config.from_file(args.model_config)  # names the file and the field on error
    elif args.model_name and not args.initial_checkpoint:
        if args.model_name not in PRESETS:
            Config.from_name(args.model_name)  # raises with the close matches
        config = Config.from_name(args.model_name)
    if config is not None and args.tokenizer_dir is not None and getattr(args, "recipe", None) != "small":
        from lit_gpt.tokenizer import Tokenizer

        check_vocab_fits(config, Tokenizer(args.tokenizer_dir).vocab_size, args.tokenizer_dir)
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


def check_vocab_fits(config: Config, tokenizer_vocab_size: int, tokenizer_dir) -> None:
    """Refuse a model whose embedding has fewer rows than the tokenizer has ids (before the data, whose ids
    would only say that some lie outside the vocabulary)."""
    if tokenizer_vocab_size > config.padded_vocab_size:
        raise ValueError(
            f"the model {config.name or '(from --model_config)'} embeds {config.padded_vocab_size} token ids, fewer "
            f"than the {tokenizer_vocab_size} of the tokenizer in {tokenizer_dir}: choose a model whose vocab_size "
            f"covers the tokenizer (--model_config with vocab_size: {tokenizer_vocab_size}), or --recipe small, "
            f"whose model takes the tokenizer's vocabulary"
        )
