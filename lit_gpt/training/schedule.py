"""Batch arithmetic and the learning-rate schedule, both by optimizer step."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional


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
    global_batch_size: Optional[int] = None,
    global_batch_tokens: Optional[int] = None,
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


@dataclass(frozen=True)
class LRSchedule:
    """Linear warmup from 0 to `lr` over `warmup_steps`, then cosine decay to `min_lr` at `max_steps`."""

    lr: float
    min_lr: float
    warmup_steps: int
    max_steps: int

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.min_lr < self.lr:
            # TinyLlama once ran with min_lr == lr, so the schedule never decayed.
            raise ValueError(f"min_lr ({self.min_lr}) must be at least 0 and below lr ({self.lr})")
        if self.warmup_steps < 0 or self.max_steps <= 0:
            raise ValueError(f"need warmup_steps >= 0 and max_steps > 0, got {self.warmup_steps}, {self.max_steps}")
        if self.warmup_steps >= self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be below max_steps ({self.max_steps})")

    def __call__(self, step: int) -> float:
        """The rate for optimizer step `step` (0-based: the update that takes the model from step to step+1)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if step >= self.max_steps:
            return self.min_lr
        progress = (step - self.warmup_steps) / (self.max_steps - self.warmup_steps)
        return self.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (self.lr - self.min_lr)
