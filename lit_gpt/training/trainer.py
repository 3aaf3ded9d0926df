"""The optimisation loop shared by pretraining and fine-tuning: gradient accumulation, clipping,
skipping of non-finite steps, validation, metrics, checkpoints and stopping on a signal."""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.distributed.tensor import DTensor
from tqdm import tqdm

from lit_gpt.evaluation.perplexity import SplitBatch, split_packed, validate
from lit_gpt.training.checkpointing import AsyncCheckpointer, latest_checkpoint, save_checkpoint
from lit_gpt.training.float8 import after_optimizer_step
from lit_gpt.training.metrics import peak_flops
from lit_gpt.training.parallel import unwrap
from lit_gpt.training.schedule import BatchPlan, LRSchedule


@dataclass
class LoopSettings:
    max_steps: int
    grad_clip: float = 1.0  # 0 disables clipping (the norm is still measured and logged)
    log_interval: int = 10
    eval_interval: int = 0  # 0: validate only at the end
    eval_interval_sec: float = 0.0  # also validate every N seconds of training time (0: never by time)
    save_interval: int = 0  # 0: save only at the end and on a signal
    keep_last: int | None = None
    max_consecutive_nonfinite: int = 10
    extra_eval_interval: int = 0  # call `extra_eval` every N steps (0: never)
    async_checkpoint: bool = False  # interval saves written while training goes on

    @classmethod
    def from_args(cls, args, max_steps: int, **extra: Any) -> LoopSettings:
        """The loop's settings from a job's resolved options (a `RunArgs`)."""
        return cls(
            max_steps=max_steps,
            grad_clip=args.grad_clip,
            log_interval=args.log_interval,
            eval_interval=args.eval_interval,
            eval_interval_sec=args.eval_interval_sec,
            save_interval=args.save_interval,
            keep_last=args.keep_last,
            max_consecutive_nonfinite=args.max_consecutive_nonfinite,
            async_checkpoint=args.async_checkpoint,
            **extra,
        )


class StopRequest:
    """Turns SIGTERM/SIGINT (preemption, Ctrl-C) into a request that the loop honours at the next
    optimizer step: save, then leave. A second SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


OPTIMIZERS = ("adamw", "muon")


def make_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    eps: float = 1e-8,
    kind: str = "adamw",
) -> torch.optim.Optimizer:
    """AdamW with no weight decay on one-dimensional parameters (the norm weights); fused on CUDA. `kind`
    "muon": Muon on the transformer blocks' weight matrices, this AdamW on the rest (lit_gpt.training.muon)."""
    if kind == "muon":
        from lit_gpt.training.muon import MuonWithAdamW, parameter_groups

        return MuonWithAdamW(parameter_groups(model, weight_decay), lr, weight_decay, betas, eps)
    if kind != "adamw":
        raise ValueError(f"--optimizer {kind!r} is not one of {', '.join(OPTIMIZERS)}")
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    on_cuda = all(p.is_cuda for p in decay + no_decay)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=betas,
        eps=eps,
        fused=on_cuda,
        foreach=None if on_cuda else True,
    )


def grad_norm_and_clip(model: nn.Module, max_norm: float) -> torch.Tensor:
    """Global gradient norm over all ranks and shards (clipped to `max_norm` when > 0), on the device."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else math.inf, foreach=True)
    return norm.full_tensor() if isinstance(norm, DTensor) else norm


@dataclass
class FitJob:
    """What `fit` trains: the model and optimizer Fabric set up, the data, the learning rate schedule and
    batch plan, the loop's settings, where checkpoints go with the files each carries and the run config
    it records. `state` holds `step`, `tokens`, `skipped_steps`, `consecutive_nonfinite`, `elapsed_sec` and
    `train_sec` (the time in training steps alone: validation and saving left out; all 0 for a fresh run).
    `split_batch` turns a batch into inputs and targets; `extra_eval`, called on every rank every
    `settings.extra_eval_interval` steps, returns further metrics to log (lm-eval scores)."""

    fabric: Any
    model: nn.Module
    optimizer: torch.optim.Optimizer
    train_loader: Any
    val_loader: Iterable | None
    schedule: LRSchedule
    plan: BatchPlan
    settings: LoopSettings
    state: dict[str, Any]
    checkpoint_root: Path
    extra_files: dict[str, Path]
    flops_per_token: int
    run_config: dict[str, Any]
    split_batch: SplitBatch = split_packed
    extra_eval: Callable[[], dict[str, float]] | None = None


def fit(job: FitJob) -> dict[str, Any]:
    """Train until `settings.max_steps` optimizer steps, a stop signal, or too many non-finite steps.
    Returns `job.state` updated; checkpoints hold it together with the data-stream state."""
    fabric, model, optimizer, train_loader, plan, settings, state = (
        job.fabric,
        job.model,
        job.optimizer,
        job.train_loader,
        job.plan,
        job.settings,
        job.state,
    )
    peak = peak_flops(fabric.device)
    world = fabric.world_size
    start_step, loop_start = state["step"], time.perf_counter()
    elapsed_before, train_before = state["elapsed_sec"], state["train_sec"]
    paused = 0.0  # seconds of this call spent validating and saving, left out of train_sec

    def train_sec() -> float:
        return train_before + time.perf_counter() - loop_start - paused

    last_val_sec = train_sec()
    last_log_time, last_log_tokens = loop_start, state["tokens"]
    data_wait = 0.0  # seconds spent in next(train_iter) since the last log line
    bar = tqdm(
        total=settings.max_steps,
        initial=state["step"],
        disable=fabric.global_rank != 0,
        dynamic_ncols=True,
        desc="train",
    )
    train_iter = iter(train_loader)
    raw_model, raw_optimizer = unwrap(model), getattr(optimizer, "optimizer", optimizer)
    # float8 weights gathered by FSDP2 get their scales once per optimizer step
    refresh_float8_scales = after_optimizer_step(raw_model)

    writer = AsyncCheckpointer() if settings.async_checkpoint else None

    def save(reason: str, background: bool = False) -> Path:
        """`background` (interval saves of an --async_checkpoint run): return once the state is copied."""
        nonlocal paused
        began = time.perf_counter()
        state["elapsed_sec"], state["train_sec"] = elapsed_before + began - loop_start, train_sec()
        full = {**state, "data": train_loader.state_dict(), "config": job.run_config, "reason": reason}
        path = (save_checkpoint if writer is None else writer.save)(
            job.checkpoint_root, state["step"], raw_model, raw_optimizer, full, job.extra_files, settings.keep_last
        )
        if writer is not None and background:
            fabric.print(f"saving checkpoint {path} ({reason}) while training goes on")
        else:
            if writer is not None:
                writer.wait()
            fabric.print(f"saved checkpoint {path} ({reason})")
        paused += time.perf_counter() - began
        return path

    with StopRequest() as stop_request, _finishing(writer):
        while state["step"] < settings.max_steps:
            step = state["step"]
            lr = job.schedule(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = torch.zeros((), device=fabric.device)
            for micro in range(plan.grad_accum_steps):
                waited = time.perf_counter()
                batch = next(train_iter)
                data_wait += time.perf_counter() - waited  # a slow loader shows up in every run's log
                x, y = job.split_batch(fabric.to_device(batch))
                with fabric.no_backward_sync(model, enabled=micro < plan.grad_accum_steps - 1):
                    loss = model(x, targets=y)
                    fabric.backward(loss / plan.grad_accum_steps)
                loss_sum += loss.detach()
            grad_norm = grad_norm_and_clip(model, settings.grad_clip)
            # The one host synchronisation of a step: a non-finite norm (the same on every rank) skips it.
            finite = bool(torch.isfinite(grad_norm).item())
            if finite:
                optimizer.step()
                if refresh_float8_scales is not None:
                    refresh_float8_scales()
                state["consecutive_nonfinite"] = 0
            else:
                state["skipped_steps"] += 1
                state["consecutive_nonfinite"] += 1
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            state["tokens"] += plan.tokens_per_step
            bar.update(1)
            step = state["step"]
            last = step == settings.max_steps
            stop = fabric.strategy.reduce_boolean_decision(stop_request.signum is not None, all=False)

            if not finite:
                fabric.print(
                    f"step {step}: non-finite gradient norm ({grad_norm.item()}); update skipped "
                    f"({state['consecutive_nonfinite']} in a row, {state['skipped_steps']} in all)"
                )
                if state["consecutive_nonfinite"] >= settings.max_consecutive_nonfinite:
                    before = latest_checkpoint(job.checkpoint_root)  # the last one saved before the divergence
                    saved = save("non-finite")
                    advice = (
                        f"resume from the last checkpoint before it with --resume {before} and a lower --lr, "
                        f"or check the data"
                        if before
                        else "no checkpoint precedes it: start again with a lower --lr, or check the data"
                    )
                    raise RuntimeError(
                        f"{state['consecutive_nonfinite']} consecutive optimizer steps had a non-finite loss or "
                        f"gradient (last at step {step}); saved {saved} (diverged: do not resume from it) and "
                        f"stopped. To go on, {advice}."
                    )

            if step % settings.log_interval == 0 or last or stop:
                now = time.perf_counter()
                loss_value = fabric.all_reduce(loss_sum / plan.grad_accum_steps, reduce_op="mean").item()
                data_wait_fraction, data_wait = data_wait / (now - last_log_time), 0.0
                tps = (state["tokens"] - last_log_tokens) / (now - last_log_time)
                last_log_time, last_log_tokens = now, state["tokens"]
                metrics = {
                    "tokens": state["tokens"],
                    "loss": loss_value,
                    "lr": lr,
                    "grad_norm": grad_norm.item(),
                    "tokens_per_sec": tps,
                    "tokens_per_sec_per_device": tps / world,
                    "skipped_steps": state["skipped_steps"],
                    "data_wait_fraction": data_wait_fraction,
                    "elapsed_sec": elapsed_before + now - loop_start,
                    "train_sec": train_sec(),
                }
                if peak:
                    metrics["mfu"] = job.flops_per_token * tps / (peak * world)
                if fabric.device.type == "cuda":
                    metrics["peak_memory_gb"] = torch.cuda.max_memory_allocated(fabric.device) / 1e9
                fabric.log_dict(metrics, step=step)
                eta = (now - loop_start) / (step - start_step) * (settings.max_steps - step)
                line = (
                    f"step {step}/{settings.max_steps} | loss {loss_value:.4f} | lr {lr:.3g} | "
                    f"grad norm {metrics['grad_norm']:.3f} | {tps:,.0f} tok/s"
                    + (f" | MFU {metrics['mfu']:.1%}" if peak else "")
                    + (f" | mem {metrics['peak_memory_gb']:.1f} GB" if "peak_memory_gb" in metrics else "")
                    + f" | ETA {_duration(eta)}"
                )
                bar.set_postfix_str(f"loss {loss_value:.3f}, {tps:,.0f} tok/s")
                if fabric.global_rank == 0:
                    bar.write(line)

            due_by_time = False
            if job.val_loader is not None and settings.eval_interval_sec:
                # every rank must validate at the same step: their clocks differ slightly
                due_by_time = fabric.strategy.reduce_boolean_decision(
                    train_sec() - last_val_sec >= settings.eval_interval_sec, all=False
                )
            due_by_step = settings.eval_interval and step % settings.eval_interval == 0
            if job.val_loader is not None and (due_by_step or due_by_time or last):
                began, last_val_sec = time.perf_counter(), train_sec()
                val_loss = validate(fabric, model, job.val_loader, job.split_batch)
                fabric.log_dict(
                    {
                        "val_loss": val_loss,
                        "val_ppl": math.exp(min(val_loss, 50)),
                        "tokens": state["tokens"],
                        "train_sec": last_val_sec,
                    },
                    step=step,
                )
                paused += time.perf_counter() - began
                if fabric.global_rank == 0:
                    bar.write(
                        f"step {step}: validation loss {val_loss:.4f}, perplexity {math.exp(min(val_loss, 50)):.2f}"
                    )

            if job.extra_eval is not None and settings.extra_eval_interval and step % settings.extra_eval_interval == 0:
                began = time.perf_counter()
                scores = job.extra_eval()
                paused += time.perf_counter() - began
                fabric.log_dict(scores, step=step)
                if fabric.global_rank == 0:
                    bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))

            if stop:
                name = signal.Signals(stop_request.signum).name if stop_request.signum else "a signal on another rank"
                save(f"stopped by {name}")
                state["stopped_by"] = name  # the entry point exits with lit_gpt.exit_codes.STOPPED_AND_SAVED
                break
            if last or (settings.save_interval and step % settings.save_interval == 0):
                save("end" if last else "interval", background=not last)
    bar.close()
    state["elapsed_sec"] = elapsed_before + time.perf_counter() - loop_start
    state["train_sec"] = train_sec()
    return state


@contextmanager
def _finishing(writer: AsyncCheckpointer | None):
    """Leaves no asynchronous save behind: one still in flight is completed when training ends, and
    only let finish writing (left as .tmp) when it ends in an error."""
    try:
        yield
    except BaseException:
        if writer is not None:
            writer.abandon()
        raise
    if writer is not None:
        writer.close()


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
