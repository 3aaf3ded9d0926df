"""Tokens per second one rank gets from the train loader, against a baseline of lit-gpt's
PackedDataset design (benchmarks/packed_baseline.py), on the same shards in the same run.

Writes two sources of random uint16 shards (full-size files of 2049 * 1024 tokens by default, mixed
7:3 by the default weights), then for each worker count times both loaders alternately, `--repeats`
times, and reports the best of each: "warm" right after writing (files in the page cache) and
"cold" after asking the kernel to drop the files' cached pages (posix_fadvise DONTNEED). Tokens
counted are B * (block_size + 1) per batch; the main process's CPU time is reported too. On a GPU
machine, `--pin_memory true` pins the batches as the trainer does there (default: when CUDA is
available), and `--world_size R` measures rank 0 of R.

    python benchmarks/reader_throughput.py                                  # CPU
    python benchmarks/reader_throughput.py --workers '[0,1,2,4]' --batches 2000   # a 16-core GPU machine
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from jsonargparse import CLI
from packed_baseline import baseline_loader

from lit_gpt.cli.shipped import recipe
from lit_gpt.data import build_train_loader, write_shard

TINYLLAMA_MIX = recipe("tinyllama")["train_sources"]


def drop_page_cache(folder: Path) -> None:
    for path in folder.glob("*.bin"):
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def main(
    files_per_source: int = 8,
    chunk_size: int = 2049 * 1024,
    block_size: int = 2048,
    micro_batch_size: int = 8,
    batches: int = 500,
    workers: list[int] = [0, 1, 2],
    repeats: int = 3,
    world_size: int = 1,
    pin_memory: bool | None = None,
    data_dir: Path | None = None,
) -> None:
    """Args:
    files_per_source: shard files written for each of the two sources.
    chunk_size: tokens per shard file.
    block_size: sample length minus one.
    micro_batch_size: samples per batch.
    batches: timed batches per measurement (after one untimed batch that starts the workers).
    workers: DataLoader worker counts to measure.
    repeats: measurements of each loader (alternating); the best is reported.
    world_size: measure rank 0 of this many ranks.
    pin_memory: pin batches (default: when CUDA is available).
    data_dir: where to write the shards (default: a temporary folder).
    """
    folder = Path(data_dir or tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    try:
        rng = np.random.default_rng(0)
        for prefix in TINYLLAMA_MIX:
            for i in range(files_per_source):
                write_shard(folder / f"{prefix}_{i:010d}.bin", rng.integers(0, 32000, chunk_size, dtype=np.uint16))
        print(
            f"{2 * files_per_source} files of {chunk_size} tokens in {folder}; block {block_size}, micro batch "
            f"{micro_batch_size}, "
            f"{batches} batches, rank 0 of {world_size}, pin_memory={pin}, {len(os.sched_getaffinity(0))} CPUs, "
            f"torch {torch.__version__}"
        )
        print(
            "| page cache | workers | ours, M tokens/s | baseline, M tokens/s | ratio | ours, main-process CPU s | "
            "baseline, main-process CPU s |"
        )
        print("|---|---|---|---|---|---|---|")
        for cache in ("warm", "cold"):
            for w in workers:
                best = {"ours": (0.0, 0.0), "baseline": (0.0, 0.0)}
                for _ in range(repeats):
                    for name in best:
                        if name == "ours":
                            loader = build_train_loader(
                                folder,
                                TINYLLAMA_MIX,
                                block_size,
                                micro_batch_size,
                                seed=1,
                                world_size=world_size,
                                num_workers=w,
                                pin_memory=pin,
                            )
                        else:
                            loader = baseline_loader(
                                folder,
                                TINYLLAMA_MIX,
                                block_size,
                                micro_batch_size,
                                w,
                                world_size=world_size,
                                pin_memory=pin,
                            )
                        if cache == "cold":
                            drop_page_cache(folder)
                        rate, cpu = timed(loader, batches, micro_batch_size, block_size)
                        best[name] = max(best[name], (rate, -cpu))
                (ours, ours_cpu), (base, base_cpu) = best["ours"], best["baseline"]
                print(
                    f"| {cache} | {w} | {ours / 1e6:.1f} | {base / 1e6:.1f} | {ours / base:.2f}x | {-ours_cpu:.2f} | "
                    f"{-base_cpu:.2f} |"
                )
    finally:
        if data_dir is None:
            shutil.rmtree(folder)


def timed(loader, batches: int, micro_batch_size: int, block_size: int) -> tuple[float, float]:
    it = iter(loader)
    next(it)
    start, cpu = time.perf_counter(), time.process_time()
    for batch in islice(it, batches):
        assert batch.shape == (micro_batch_size, block_size + 1)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    del it
    return batches * micro_batch_size * (block_size + 1) / wall, cpu


if __name__ == "__main__":
    CLI(main, as_positional=False)
