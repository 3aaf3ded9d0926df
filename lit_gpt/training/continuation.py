"""Going on from a checkpoint in another way than resuming it as it was: annealing branches (a decay started
from any checkpoint of a run, written to a new out_dir), changes of the data mix and of the learning-rate
schedule."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lit_gpt.training.checkpointing import damage, read_train_state, resume_path
from lit_gpt.training.schedule import LRSchedule, schedule_from_options

# Options an annealing branch never takes from the original run: they say where the branch comes from
# and how long it lasts, or the model comes from the checkpoint itself.
_OWN_TO_THE_BRANCH = (
    "out_dir",
    "resume",
    "initial_checkpoint",
    "anneal_from",
    "max_steps",
    "max_tokens",
    "decay_steps",
    "decay_fraction",
    "lr_schedule",
    "model_name",
    "model_config",
)
# The data stream's order depends on these: always the original run's.
_FROM_THE_ORIGINAL = ("seed", "shuffle_buffer_files")


def anneal_options(args) -> tuple[Any, Path]:
    """`args` of an annealing branch (`args.anneal_from` set) completed: options left unset are the
    original run's, the schedule is a WSD decay of `decay_steps` from the checkpoint's step k (max_steps
    k + decay_steps) starting from the rate the original schedule had at k. Returns the options and the
    checkpoint the branch starts from: `anneal_from`, or the branch's own newest one when it resumes."""
    source = Path(args.anneal_from)
    if args.out_dir is None:
        raise ValueError("--anneal_from writes a new run: give it its own --out_dir")
    if args.decay_steps is None or args.decay_steps < 1 or args.decay_fraction is not None:
        raise ValueError("--anneal_from needs --decay_steps N (N >= 1): the length of the decay in steps")
    if args.max_steps is not None or args.max_tokens is not None:
        raise ValueError(
            "--anneal_from ends the branch at the checkpoint's step + --decay_steps: drop --max_steps/--max_tokens"
        )
    if source.resolve().parent == (Path(args.out_dir) / "checkpoints").resolve():
        raise ValueError(
            f"--out_dir {args.out_dir} is the original run's: an annealing branch goes to a new one, "
            f"so that the original run stays as it is and can go on"
        )
    own = resume_path(args.resume, Path(args.out_dir) / "checkpoints")
    if own is not None:
        # the branch resumes: its own saved options already say where it decays to
        saved = read_train_state(own)["config"]
        return _filled(args, saved, keep=("max_steps", "lr", "min_lr", "warmup_steps")), own
    if not source.is_dir():
        raise FileNotFoundError(f"--anneal_from {source}: no such checkpoint folder")
    problem = damage(source)
    if problem:
        raise ValueError(f"--anneal_from {source}: the checkpoint is damaged ({problem})")
    train_state = read_train_state(source)
    original, k = train_state["config"], int(train_state["step"])
    if "train_sources" not in original:  # a fine-tuning checkpoint: its run has no data stream to go on with
        kind = f"a {original['method']} fine-tuning checkpoint" if "method" in original else "not a pretraining one"
        raise ValueError(
            f"--anneal_from {source}: {kind}; an annealing branch goes on with a pretraining run's schedule and "
            f"data stream: give a step-N folder of a lit-pretrain run"
        )
    if original.get("out_dir") and Path(original["out_dir"]).resolve() == Path(args.out_dir).resolve():
        raise ValueError(
            f"--out_dir {args.out_dir} is the original run's: an annealing branch goes to a new one, "
            f"so that the original run stays as it is and can go on"
        )
    branch = _filled(args, original, keep=("min_lr", "warmup_steps"))
    if k < branch.warmup_steps or k == 0:
        raise ValueError(
            f"--anneal_from {source}: step {k} is inside the warmup ({branch.warmup_steps} steps); "
            f"anneal from a checkpoint after it"
        )
    lr = args.lr
    if lr is None:
        # where the original schedule stood at k (its plateau for a WSD or constant run): no jump
        total = original.get("max_steps")
        if original.get("max_tokens"):
            total = math.ceil(original["max_tokens"] / (train_state["tokens"] // k))
        lr = schedule_from_options(SimpleNamespace(**original), total)(k)
    return dataclasses.replace(branch, lr=lr, max_steps=k + args.decay_steps), source


def _filled(args, saved: dict[str, Any], keep: tuple[str, ...]):
    """`args` with every unset option (and those the data order depends on) taken from `saved`, a run
    config; of the branch-own options only those in `keep`."""
    values = {}
    for field in dataclasses.fields(args):
        name, value = field.name, getattr(args, field.name)
        if (
            name in saved
            and saved[name] is not None
            and (name in _FROM_THE_ORIGINAL or (value is None and (name not in _OWN_TO_THE_BRANCH or name in keep)))
        ):
            value = saved[name]
            if "Path" in str(field.type):
                value = Path(value)
        values[name] = value
    values.update(lr_schedule="wsd", model_name=None, model_config=None, initial_checkpoint=None, max_tokens=None)
    return type(args)(**values)


def check_mix_change(saved: dict[str, Any], current: dict[str, Any], allowed: bool) -> None:
    """Refuse a different `train_sources` (sources, weights or their order) on resume unless allowed."""
    was, now = saved.get("train_sources") or {}, current.get("train_sources") or {}
    if list(was.items()) != list(now.items()) and not allowed:
        raise ValueError(
            f"cannot resume: the data mix changed (train_sources {was} -> {now}); pass --allow_mix_change "
            f"to go on with the new mix from here (PRETRAIN.md, Changing the data mix), or give the "
            f"checkpoint's mix again"
        )


# The options the learning-rate schedule is made of.
SCHEDULE_OPTIONS = (
    "max_steps",
    "max_tokens",
    "lr",
    "min_lr",
    "warmup_steps",
    "lr_schedule",
    "decay_steps",
    "decay_fraction",
    "decay_shape",
)


def _schedule_of(config: dict[str, Any], tokens_per_step: int) -> LRSchedule:
    total = config.get("max_steps")
    if config.get("max_tokens"):
        total = -(-config["max_tokens"] // tokens_per_step)
    return schedule_from_options(SimpleNamespace(**config), total)


def _end(schedule: LRSchedule) -> str:
    return "no decay" if schedule.kind == "constant" else f"{schedule.min_lr:.3g} at step {schedule.max_steps}"


def check_schedule_change(
    saved: dict[str, Any], current: dict[str, Any], tokens_per_step: int, step: int, allowed: bool
) -> str | None:
    """A resume at `step` whose options (`current`, a run config) give other learning rates than the
    checkpoint's (`saved`): refused unless `allowed`, then returned as one line saying what changes. None
    when the rates stay the same (a constant schedule made longer, say)."""
    before, after = _schedule_of(saved, tokens_per_step), _schedule_of(current, tokens_per_step)
    if before.rates_key == after.rates_key:
        return None
    options = ", ".join(
        f"{name} {saved.get(name)} -> {current.get(name)}"
        for name in SCHEDULE_OPTIONS
        if saved.get(name) != current.get(name)
    )
    change = f"{options}: step {step + 1} trains at lr {after(step):.3g} instead of {before(step):.3g}"
    if _end(after) != _end(before):
        change += f", the schedule ends with {_end(after)} instead of {_end(before)}"
    if not allowed:
        raise ValueError(
            f"cannot resume with another learning-rate schedule ({change}); pass --allow_schedule_change true to "
            f"go on with the new schedule from here (PRETRAIN.md, Resuming with another schedule), or give the "
            f"checkpoint's values again"
        )
    return change
