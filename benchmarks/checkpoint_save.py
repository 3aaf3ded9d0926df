"""The training time a checkpoint save costs, synchronous against asynchronous (--async_checkpoint).

One process trains a model with AdamW on random tokens (bf16 autocast on CUDA). After warm-up steps it
times normal steps (median), then saves a checkpoint (model + optimizer state, lit_gpt's
save_checkpoint or AsyncCheckpointer, into --out_dir) followed by --steps_after steps, both ways:

- time lost to training: wall time of the save call and the steps after it, minus those steps at the
  normal step time (for the asynchronous save: also any wait for its write at the end);
- save wall time: from the start of the save until its shards are written (the asynchronous write is
  seen ending at a step boundary, so this is rounded up to one step) or, synchronous, until it returns.

    python benchmarks/checkpoint_save.py --model tiny_LLaMA_1b --device cuda --micro_batch_size 4
    python benchmarks/checkpoint_save.py --model micro_LLaMA --device cpu --block_size 64   # smoke test

The table comes last.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import torch

from lit_gpt.config import Config
from lit_gpt.model import GPT
from lit_gpt.training.checkpointing import AsyncCheckpointer, save_checkpoint
from lit_gpt.training.trainer import make_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny_LLaMA_1b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--micro_batch_size", type=int, default=4)
    parser.add_argument("--block_size", type=int, default=None, help="default: the model's")
    parser.add_argument("--warmup_steps", type=int, default=3)
    parser.add_argument("--timed_steps", type=int, default=5)
    parser.add_argument("--steps_after", type=int, default=10, help="steps trained after each save (at least)")
    parser.add_argument(
        "--max_steps_after",
        type=int,
        default=1000,
        help="async: train on until the write has finished, at most this many steps",
    )
    parser.add_argument("--out_dir", type=Path, default=Path("out/checkpoint_save_benchmark"))
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    config = Config.from_name(args.model)
    block_size = args.block_size or config.block_size
    with device:
        model = GPT(config)
    optimizer = make_optimizer(model, 4e-4, 0.1, (0.9, 0.95))
    tokens = torch.randint(0, config.vocab_size, (args.micro_batch_size, block_size + 1), device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step() -> None:
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(tokens[:, :-1], targets=tokens[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()

    for _ in range(args.warmup_steps):
        step()
    times = []
    for _ in range(args.timed_steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    step_time = statistics.median(times)
    print(f"step {step_time:.3f} s (median of {args.timed_steps})", flush=True)

    shutil.rmtree(args.out_dir, ignore_errors=True)
    root = args.out_dir / "checkpoints"
    rows = []

    # synchronous: the save blocks, then training goes on
    start = time.perf_counter()
    save_checkpoint(root, 1, model, optimizer, {"step": 1}, {})
    saved = time.perf_counter()
    for _ in range(args.steps_after):
        step()
    end = time.perf_counter()
    rows.append(("sync", saved - start, end - start - args.steps_after * step_time, saved - start))
    print("row", rows[-1], flush=True)  # each row as it comes: a later failure keeps the earlier ones

    # asynchronous: the call returns once the state is copied; training goes on while it is written, for
    # at least --steps_after steps and until the write has finished (as between two saves of a real run)
    writer = AsyncCheckpointer()
    for number, label in ((2, "async (first: allocates)"), (3, "async")):
        shutil.rmtree(root / f"step-{number - 1:09d}", ignore_errors=True)  # one checkpoint on disk at a time
        start = time.perf_counter()
        writer.save(root, number, model, optimizer, {"step": number}, {})
        returned = time.perf_counter()
        written_at, steps = None, 0
        while steps < args.steps_after or (written_at is None and steps < args.max_steps_after):
            step()
            steps += 1
            if written_at is None and writer.written:
                written_at = time.perf_counter()
        trained = time.perf_counter()
        writer.wait()  # completion: files.json and the rename (and any write left)
        end = time.perf_counter()
        lost = trained - start - steps * step_time + (end - trained)
        rows.append((label, returned - start, lost, (written_at or end) - start))
        print("row", rows[-1], flush=True)
    writer.close()

    size = sum(p.stat().st_size for p in (root / "step-000000003").rglob("*") if p.is_file())
    print(
        f"{args.model} on {args.device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), "
        f"torch {torch.__version__}: step {step_time:.3f} s (median of {args.timed_steps}), checkpoint "
        f"{size / 1e9:.2f} GB, at least {args.steps_after} steps after each save (async: until written)"
    )
    print("| save | call returns after (s) | training time lost (s) | save wall time (s) |")
    print("|---|---|---|---|")
    for label, call, lost, wall in rows:
        print(f"| {label} | {call:.2f} | {max(lost, 0.0):.2f} | {wall:.2f} |")


if __name__ == "__main__":
    main()
