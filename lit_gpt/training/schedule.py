"""Batch arithmetic and the learning-rate schedule, both by optimizer step."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchPlan:
    global_batch_size: int  # sequences per optimizer step, over all devices
    micro_batch_size: int  # sequences per forward/backward on one device
    world_size: int
    grad_accum_steps: int
    block_size: int

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch_size * self.block_size


def plan_batches(
    micro_batch_size: int,
    world_size: int,
    block_size: int,
    global_batch_size: int | None = None,
    global_batch_tokens: int | None = None,
) -> BatchPlan:
    """Derive gradient accumulation from a global batch (sequences or tokens) that does not depend on
    the number of devices. Any split that does not come out whole is an error, raised at start-up."""
    if (global_batch_size is None) == (global_batch_tokens is None):
        raise ValueError("give exactly one of global_batch_size (sequences) and global_batch_tokens")
    if global_batch_tokens is not None:
        if global_batch_tokens % block_size:
            raise ValueError(
                f"global_batch_tokens={global_batch_tokens} is not a multiple of the sequence length {block_size}"
            )
        global_batch_size = global_batch_tokens // block_size
    assert global_batch_size is not None
    if global_batch_size <= 0 or micro_batch_size <= 0:
        raise ValueError(f"batch sizes must be positive (global {global_batch_size}, micro {micro_batch_size})")
    per_step = micro_batch_size * world_size
    if global_batch_size % per_step:
        raise ValueError(
            f"global batch of {global_batch_size} sequences cannot be split into micro batches of "
            f"{micro_batch_size} on {world_size} device(s) ({micro_batch_size} x {world_size} = {per_step} "
            f"does not divide {global_batch_size}); choose a micro batch size that divides "
            f"{global_batch_size // world_size if global_batch_size % world_size == 0 else 'it'}"
        )
    return BatchPlan(global_batch_size, micro_batch_size, world_size, global_batch_size // per_step, block_size)


SCHEDULES = ("cosine", "wsd", "constant")
DECAY_SHAPES = ("linear", "cosine", "1-sqrt")


@dataclass(frozen=True)
class LRSchedule:
    """The learning rate by optimizer step. Every kind starts with a linear warmup from 0 to `lr` over
    `warmup_steps`; then
      - "cosine": cosine decay to `min_lr` over the remaining steps;
      - "wsd" (warmup-stable-decay): `lr` until the last `decay_steps` steps, which decay to `min_lr`
        along `decay_shape` ("linear", "cosine" or "1-sqrt": lr drops as the square root of the decay's
        progress, fastest at its start);
      - "constant": `lr` for good (`min_lr` unused).
    Like the warmup, whose last step takes `lr`, a decay of n steps ends on its target: step i of it
    (0-based) is (i + 1) / n of the way, so the run's last step, max_steps - 1, takes `min_lr`.
    A WSD run may branch off into a decay at any of its checkpoints (annealing, PRETRAIN.md)."""

    lr: float
    min_lr: float
    warmup_steps: int
    max_steps: int
    kind: str = "cosine"
    decay_steps: int | None = None
    decay_shape: str = "linear"

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"lr_schedule {self.kind!r} is not one of {', '.join(SCHEDULES)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.kind != "constant" and not 0 <= self.min_lr < self.lr:
            # TinyLlama once ran with min_lr == lr, so the schedule never decayed.
            raise ValueError(f"min_lr ({self.min_lr}) must be at least 0 and below lr ({self.lr})")
        if self.warmup_steps < 0 or self.max_steps <= 0:
            raise ValueError(f"need warmup_steps >= 0 and max_steps > 0, got {self.warmup_steps}, {self.max_steps}")
        if self.warmup_steps >= self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be below max_steps ({self.max_steps})")
        if self.kind == "wsd":
            if self.decay_shape not in DECAY_SHAPES:
                raise ValueError(f"decay_shape {self.decay_shape!r} is not one of {', '.join(DECAY_SHAPES)}")
            if self.decay_steps is None or self.decay_steps < 1:
                raise ValueError(f"the wsd schedule needs decay_steps >= 1, got {self.decay_steps}")
            if self.warmup_steps + self.decay_steps > self.max_steps:
                raise ValueError(
                    f"warmup_steps ({self.warmup_steps}) + decay_steps ({self.decay_steps}) exceed "
                    f"max_steps ({self.max_steps})"
                )
        elif self.decay_steps is not None:
            raise ValueError(f"decay_steps applies to the wsd schedule only, not to {self.kind!r}")

    @property
    def rates_key(self) -> tuple:
        """What the rates depend on: two schedules with the same key give every step the same rate (a constant
        schedule's length, for one, does not matter)."""
        if self.kind == "constant":
            return (self.kind, self.lr, self.warmup_steps)
        if self.kind == "cosine":
            return (self.kind, self.lr, self.min_lr, self.warmup_steps, self.max_steps)
        return (self.kind, self.lr, self.min_lr, self.warmup_steps, self.max_steps, self.decay_steps, self.decay_shape)

    @property
    def decay_start(self) -> int:
        """The first step of the decay (cosine: the end of the warmup; constant: never, max_steps)."""
        if self.kind == "wsd":
            return self.max_steps - self.decay_steps
        return self.warmup_steps if self.kind == "cosine" else self.max_steps

    def __call__(self, step: int) -> float:
        """The rate for optimizer step `step` (0-based: the update that takes the model from step to step+1)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return self.lr
        if step >= self.max_steps:
            return self.min_lr
        start = self.decay_start
        if step < start:
            return self.lr
        progress = (step - start + 1) / (self.max_steps - start)
        shape = "cosine" if self.kind == "cosine" else self.decay_shape
        if shape == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * progress))
        elif shape == "linear":
            factor = 1.0 - progress
        else:  # 1-sqrt
            factor = 1.0 - math.sqrt(progress)
        return self.min_lr + factor * (self.lr - self.min_lr)


def decay_length(max_steps: int, decay_steps: int | None, decay_fraction: float | None) -> int | None:
    """The WSD decay in steps, from `decay_steps` or from `decay_fraction` of `max_steps` (rounded)."""
    if decay_steps is not None and decay_fraction is not None:
        raise ValueError("give one of --decay_steps and --decay_fraction, not both")
    if decay_fraction is not None:
        if not 0 < decay_fraction <= 1:
            raise ValueError(f"--decay_fraction {decay_fraction} must be in (0, 1]")
        return max(1, round(decay_fraction * max_steps))
    return decay_steps


def schedule_from_options(args, max_steps: int) -> LRSchedule:
    """The schedule a job's resolved options ask for (`lr_schedule`, `decay_steps` or `decay_fraction`,
    `decay_shape`; a job without those options gets the cosine)."""
    kind = getattr(args, "lr_schedule", "cosine")
    decay = decay_length(max_steps, getattr(args, "decay_steps", None), getattr(args, "decay_fraction", None))
    if kind != "wsd" and decay is not None:
        raise ValueError(f"--decay_steps/--decay_fraction apply to --lr_schedule wsd, not {kind}")
    if kind == "wsd" and decay is None:
        raise ValueError("--lr_schedule wsd needs --decay_steps or --decay_fraction")
    return LRSchedule(
        args.lr,
        args.min_lr,
        args.warmup_steps,
        max_steps,
        kind=kind,
        decay_steps=decay,
        decay_shape=getattr(args, "decay_shape", "linear"),
    )
