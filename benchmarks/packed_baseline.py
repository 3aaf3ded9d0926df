"""A baseline loader of lit-gpt's PackedDataset design, written here for the loader benchmark.

The design (lit-gpt `packed_dataset.py`, as TinyLlama trains with it): every (rank, worker) takes
its own slice of the file list, shuffles it, memory-maps `n_chunks` files at a time, walks the blocks
of those files in a shuffled order and yields one block at a time as an int64 tensor; the sources
are mixed per sample by a weighted random choice, and the DataLoader's default collate stacks the
samples into batches. The block count of every file is taken from the first file's header.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lit_gpt.data.shards import HEADER, read_header


class PackedBaseline(IterableDataset):
    def __init__(
        self, files: list[Path], sample_len: int, n_chunks: int = 8, seed: int = 42, rank: int = 0, world_size: int = 1
    ) -> None:
        self.files, self.sample_len, self.n_chunks = [Path(f) for f in files], sample_len, n_chunks
        self.seed, self.rank, self.world_size = seed, rank, world_size

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        shard = self.rank * workers + worker
        mine = self.files[shard :: self.world_size * workers]
        first = read_header(mine[0])
        dtype, per_file = first.dtype, first.tokens // self.sample_len
        rng = np.random.default_rng(self.seed + shard)
        while True:  # epochs
            order = [mine[i] for i in rng.permutation(len(mine))]
            for start in range(0, len(order), self.n_chunks):
                group = order[start : start + self.n_chunks]
                maps = [np.memmap(f, dtype=dtype, mode="r", offset=HEADER.size, shape=(first.tokens,)) for f in group]
                for i in rng.permutation(len(group) * per_file):
                    f, b = divmod(int(i), per_file)
                    block = maps[f][b * self.sample_len : (b + 1) * self.sample_len]
                    yield torch.from_numpy(block.astype(np.int64))


class CombinedBaseline(IterableDataset):
    def __init__(self, datasets: list[PackedBaseline], weights: list[float], seed: int = 42) -> None:
        self.datasets, self.weights, self.seed = datasets, weights, seed

    def __iter__(self) -> Iterator[torch.Tensor]:
        iterators = [iter(d) for d in self.datasets]
        rng = random.Random(self.seed)
        while True:
            (it,) = rng.choices(iterators, weights=self.weights, k=1)
            yield next(it)


def baseline_loader(
    folder: Path,
    sources: dict[str, float],
    block_size: int,
    micro_batch_size: int,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> DataLoader:
    datasets = [
        PackedBaseline(sorted(Path(folder).glob(f"{prefix}_*.bin")), block_size + 1, rank=rank, world_size=world_size)
        for prefix in sources
    ]
    combined = CombinedBaseline(datasets, list(sources.values()))
    return DataLoader(combined, batch_size=micro_batch_size, num_workers=num_workers, pin_memory=pin_memory)
