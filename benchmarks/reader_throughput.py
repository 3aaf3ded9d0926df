"""Tokens per second one rank gets from the train loader reading shards on disk.

Writes two sources of random uint16 shards (full-size files of 2049 * 1024 tokens by default, mixed
with the default weights), then times `build_train_loader(...)` batches for several worker counts:
"warm" right after writing (files in the page cache) and "cold" after asking the kernel to drop the
files' cached pages (posix_fadvise DONTNEED). Tokens counted are B * (block_size + 1) per batch.

    python benchmarks/reader_throughput.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import numpy as np
from jsonargparse import CLI

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lit_gpt.data import build_train_loader, write_shard  # noqa: E402


def drop_page_cache(folder: Path) -> None:
    for path in folder.glob("*.bin"):
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def main(files_per_source: int = 8, chunk_size: int = 2049 * 1024, block_size: int = 2048, micro_batch_size: int = 8,
         batches: int = 200, workers: list[int] = [0, 1, 2], data_dir: Path | None = None) -> None:
    """Args:
        files_per_source: shard files written for each of the two sources.
        chunk_size: tokens per shard file.
        block_size: sample length minus one.
        micro_batch_size: samples per batch.
        batches: timed batches per measurement (after one untimed batch that starts the workers).
        workers: DataLoader worker counts to measure.
        data_dir: where to write the shards (default: a temporary folder).
    """
    folder = Path(data_dir or tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    try:
        measure(folder, files_per_source, chunk_size, block_size, micro_batch_size, batches, workers)
    finally:
        if data_dir is None:
            shutil.rmtree(folder)


def measure(folder: Path, files_per_source: int, chunk_size: int, block_size: int, micro_batch_size: int, batches: int, workers: list[int]) -> None:
    rng = np.random.default_rng(0)
    for prefix in ("train_slimpajama", "train_starcoder"):
        for i in range(files_per_source):
            write_shard(folder / f"{prefix}_{i:010d}.bin", rng.integers(0, 32000, chunk_size, dtype=np.uint16))
    print(f"{2 * files_per_source} files of {chunk_size} tokens in {folder}; block {block_size}, micro batch {micro_batch_size}, {batches} batches")
    for cache in ("warm", "cold"):
        for w in workers:
            loader = build_train_loader(folder, block_size=block_size, micro_batch_size=micro_batch_size, seed=1, num_workers=w)
            if cache == "cold":
                drop_page_cache(folder)
            it = iter(loader)
            next(it)
            start = time.perf_counter()
            for batch in islice(it, batches):
                assert batch.shape == (micro_batch_size, block_size + 1)
            rate = batches * batch.numel() / (time.perf_counter() - start)
            print(f"{cache} page cache, num_workers={w}: {rate / 1e6:.2f} M tokens/s per rank")


if __name__ == "__main__":
    CLI(main, as_positional=False)
