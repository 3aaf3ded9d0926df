"""Deterministic, resumable streaming of training samples from packed shards.

One global sample sequence, independent of world size and worker count:

- Per source (a sorted list of shard files), epoch e orders the files by a permutation seeded from
  (seed, e) only; consecutive groups of `shuffle_buffer_files` files form buffers, and the blocks
  (samples of block_size + 1 tokens) of buffer b are permuted with a seed from (seed, e, b). Sample i
  of a source is found in O(log n) from prefix sums over block counts read from the file headers.
- The mix: global sample g comes from the source drawn for it by a generator seeded from
  (seed, g // 65536); it is that source's sample number "picks of that source before g".
- Rank r of R gets global samples g = l * R + r (l its local index); local batch k holds local samples
  [k * B, (k + 1) * B). Batches travel in chunks of C = 16 (one tensor, one inter-process transfer
  for 16 batches, which is what makes workers worth having): chunk m, counted from where the
  iteration starts, holds local batches [m * C, (m + 1) * C) and comes from DataLoader worker m % W,
  the order in which torch's DataLoader takes items from its workers.

So every block is read by exactly one (rank, worker) per epoch, and resuming needs only g and the
per-source pick counts at g: no data is read again, and the world size or the worker count may
change as long as g stays a multiple of the new samples per micro step B * R.
"""

from __future__ import annotations

import os
import re
import warnings
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lit_gpt.data.integrity import check_ids
from lit_gpt.data.shards import ShardInfo, open_shard, read_header
from lit_gpt.data.workers import killed_at_exit, start_loader_worker

MIX_CHUNK = 65536
# Distinct seed-sequence tags so the file, block and mix generators never share a stream.
_FILES, _BLOCKS, _MIX = 1, 2, 3


def _rng(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) for k in key])))


def find_shards(data_dir: str | Path, prefix: str) -> list[ShardInfo]:
    """The validated headers of `{data_dir}/{prefix}_{counter}.bin`, in sorted order. Also found:
    `{prefix}_{process}_{counter}.bin`, the names TinyLlama's preparation gives (one prefix per
    preparing process), so such folders train as they are."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: data folder not found")
    name = re.compile(rf"{re.escape(prefix)}(_\d+)?_\d+\.bin")
    files = sorted(p for p in data_dir.glob(f"{prefix}_*.bin") if name.fullmatch(p.name))
    if not files:
        raise FileNotFoundError(
            f"{data_dir}: no shard files {prefix}_*.bin for source {prefix!r} (names {prefix}_<counter>.bin or "
            f"{prefix}_<process>_<counter>.bin)"
        )
    return [read_header(p) for p in files]


class _LRU(OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        if len(self) > self.size:
            self.popitem(last=False)
        return value


class Source:
    """One source's shuffled, epoch-by-epoch sequence of blocks (see the module docstring)."""

    def __init__(
        self,
        prefix: str,
        shards: list[ShardInfo],
        block_size: int,
        seed: int,
        shuffle_buffer_files: int = 8,
        vocab_size: int | None = None,
    ) -> None:
        self.prefix, self.shards, self.seed, self.vocab_size = prefix, shards, seed, vocab_size
        self.sample_len = block_size + 1
        self.buffer_files = shuffle_buffer_files
        self.blocks = np.array([s.tokens // self.sample_len for s in shards], np.int64)
        self.total = int(self.blocks.sum())
        if self.total == 0:
            folder = shards[0].path.parent if shards else "?"
            raise ValueError(
                f"{folder}/{prefix}_*.bin: {len(shards)} files, {sum(s.tokens for s in shards)} tokens, but no file "
                "holds "
                f"one full sample of block_size + 1 = {self.sample_len} tokens"
            )
        self.key = zlib.crc32(prefix.encode())
        self._epochs = _LRU(2)
        self._perms = _LRU(16)
        self._maps = _LRU(32)

    def __getstate__(self) -> dict:
        # Workers get fresh caches: no open memory maps travel between processes.
        return {**self.__dict__, "_epochs": _LRU(2), "_perms": _LRU(16), "_maps": _LRU(32)}

    def fingerprint(self) -> dict:
        return {"prefix": self.prefix, "files": len(self.shards), "blocks": self.total}

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """File order, first block of each file in that order, and first block of each buffer."""
        order = _rng(self.seed, _FILES, self.key, epoch).permutation(len(self.shards))
        counts = self.blocks[order]
        file_start = np.cumsum(counts) - counts
        buffer_start = file_start[:: self.buffer_files]
        return order, file_start, buffer_start

    def locate(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Samples `index` of this source -> (file numbers in sorted order, blocks within those files)."""
        index = np.asarray(index, np.int64)
        epochs, j = np.divmod(index, self.total)
        files, blocks = np.empty_like(index), np.empty_like(index)
        for epoch in np.unique(epochs).tolist():
            sel = epochs == epoch
            order, file_start, buffer_start = self._epochs.get_or(epoch, lambda: self._epoch(epoch))
            je = j[sel]
            b = np.searchsorted(buffer_start, je, "right") - 1
            q = np.empty_like(je)
            for buffer in np.unique(b).tolist():
                start = int(buffer_start[buffer])
                end = int(buffer_start[buffer + 1]) if buffer + 1 < len(buffer_start) else self.total
                perm = self._perms.get_or(
                    (epoch, buffer), lambda: _rng(self.seed, _BLOCKS, self.key, epoch, buffer).permutation(end - start)
                )
                mine = b == buffer
                q[mine] = start + perm[je[mine] - start]
            k = np.searchsorted(file_start, q, "right") - 1
            files[sel], blocks[sel] = order[k], q - file_start[k]
        return files, blocks

    def tokens(self, file: int) -> np.ndarray:
        # A plain ndarray view of the memory map: slicing it skips np.memmap's per-slice overhead.
        return self._maps.get_or(file, lambda: np.asarray(open_shard(self.shards[file])))


class Mixture:
    """Which source each global sample comes from: a vectorised draw per chunk of 65536 samples."""

    def __init__(self, weights: list[float], seed: int) -> None:
        p = np.asarray(weights, np.float64)
        if len(p) == 0 or (p <= 0).any() or not np.isfinite(p).all():
            raise ValueError(f"source weights must be positive numbers, got {weights}")
        self.p, self.seed = p / p.sum(), seed
        self._chunks = _LRU(2)

    def _chunk(self, c: int) -> np.ndarray:
        if len(self.p) == 1:
            return np.zeros(MIX_CHUNK, np.uint8)
        return _rng(self.seed, _MIX, c).choice(len(self.p), size=MIX_CHUNK, p=self.p).astype(np.uint8)

    def choices(self, start: int, stop: int) -> np.ndarray:
        """Source numbers of global samples [start, stop)."""
        parts = []
        for c in range(start // MIX_CHUNK, (stop - 1) // MIX_CHUNK + 1):
            chunk = self._chunks.get_or(c, lambda: self._chunk(c))
            parts.append(chunk[max(start - c * MIX_CHUNK, 0) : min(stop - c * MIX_CHUNK, MIX_CHUNK)])
        return np.concatenate(parts) if parts else np.empty(0, np.uint8)


class ShardStream(IterableDataset):
    """Yields this rank's local batches forever, in chunks of CHUNK batches (LongTensor of shape
    (CHUNK, B, block_size + 1)); in a DataLoader worker w of W it yields chunks w, w + W, ...
    counted from `start`."""

    CHUNK = 16  # batches assembled, and sent from a worker, together (see the module docstring)

    def __init__(
        self, sources: list[Source], mixture: Mixture, micro_batch_size: int, rank: int, world_size: int
    ) -> None:
        self.sources, self.mixture = sources, mixture
        self.batch, self.rank, self.world_size = micro_batch_size, rank, world_size
        self.start = (0, [0] * len(sources))  # (global sample g, picks per source before g)

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Chunks of C local batches, LongTensor (C, B, block_size + 1), this worker's share."""
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        B, R, C = self.batch, self.world_size, self.CHUNK
        pos, picks = self.start[0], np.array(self.start[1], np.int64)
        sample_len = self.sources[0].sample_len
        k = pos // (B * R) + worker * C  # the first local batch of this worker's first chunk
        while True:
            # Where the samples of the chunk's batches are, found for all of them at once.
            wanted = (((k + np.arange(C))[:, None] * B + np.arange(B)) * R + self.rank).ravel()
            # Advance the pick counts through every global sample up to the last wanted one.
            chosen = self.mixture.choices(pos, int(wanted[-1]) + 1)
            rel = wanted - pos
            src = chosen[rel]
            files, blocks = np.empty(len(wanted), np.int64), np.empty(len(wanted), np.int64)
            for s, source in enumerate(self.sources):
                hits = np.cumsum(chosen == s)
                mine = src == s
                files[mine], blocks[mine] = source.locate(picks[s] + hits[rel[mine]] - 1)
                picks[s] += hits[-1]
            pos, k = int(wanted[-1]) + 1, k + workers * C
            out = np.empty((C * B, sample_len), np.int64)
            for row, (s, f, start) in enumerate(zip(src.tolist(), files.tolist(), (blocks * sample_len).tolist())):
                out[row] = self.sources[s].tokens(f)[start : start + sample_len]
            vocab_size = self.sources[0].vocab_size
            if vocab_size is not None and (out.max() >= vocab_size or out.min() < 0):
                # one check for the whole chunk; the slow search for the culprit only when it fails
                for row, (s, f, b) in enumerate(zip(src.tolist(), files.tolist(), blocks.tolist())):
                    check_ids(out[row], vocab_size, self.sources[s].shards[f].path, b)
            yield torch.from_numpy(out).view(C, B, sample_len)


class TrainLoader:
    """Iterates training batches through a torch DataLoader and tracks the resumable position.

    The position (global samples consumed and per-source pick counts) lives in the main process and
    advances when a batch is handed out; `state_dict()` / `load_state_dict()` save and restore it, and
    every new iteration starts at the first sample not handed out yet.
    """

    def __init__(
        self,
        dataset: ShardStream,
        num_workers: int,
        seed: int,
        shuffle_buffer_files: int,
        prefetch_factor: int = 4,
        pin_memory: bool = False,
    ) -> None:
        self.dataset, self.num_workers, self.pin_memory = dataset, num_workers, pin_memory
        self.seed, self.shuffle_buffer_files, self.prefetch_factor = seed, shuffle_buffer_files, prefetch_factor
        self.g, self.counts = 0, np.zeros(len(dataset.sources), np.int64)
        self.retired: dict = {}  # prefix -> {"count": samples delivered, "fingerprint": ...} of sources left out

    @property
    def samples_per_micro_step(self) -> int:
        """Micro batch x world size (the optimizer's global batch is this x the accumulation steps)."""
        return self.dataset.batch * self.dataset.world_size

    @property
    def epochs(self) -> dict[str, float]:
        """Fraction of an epoch each source has delivered so far (e.g. 1.5 = half-way through epoch 2)."""
        return {s.prefix: float(n) / s.total for s, n in zip(self.dataset.sources, self.counts)}

    def __iter__(self) -> Iterator[torch.Tensor]:
        self.dataset.start = (self.g, self.counts.tolist())
        extra = {"prefetch_factor": self.prefetch_factor} if self.num_workers else {}
        loader = DataLoader(
            self.dataset,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            worker_init_fn=partial(start_loader_worker, os.getpid()),
            **extra,
        )
        with killed_at_exit(lambda: iter(loader)) as chunks:
            for chunk in chunks:
                for batch in chunk:
                    picked = self.mixture.choices(self.g, self.g + self.samples_per_micro_step)
                    self.counts += np.bincount(picked, minlength=len(self.counts))
                    self.g += self.samples_per_micro_step
                    yield batch

    @property
    def mixture(self) -> Mixture:
        return self.dataset.mixture

    def state_dict(self) -> dict:
        d = self.dataset
        return {
            "g": self.g,
            "source_counts": {s.prefix: int(n) for s, n in zip(d.sources, self.counts)},
            "seed": self.seed,
            "block_size": d.sources[0].sample_len - 1,
            "shuffle_buffer_files": self.shuffle_buffer_files,
            "weights": {s.prefix: float(p) for s, p in zip(d.sources, d.mixture.p)},
            "sources": [s.fingerprint() for s in d.sources],
            "micro_batch_size": d.batch,
            "world_size": d.world_size,
            # sources an earlier mix change left out: where each stopped, should it come back
            "retired_sources": self.retired,
        }

    def load_state_dict(self, state: dict, allow_mix_change: bool = False) -> None:
        """Continue from `state`. With `allow_mix_change`, the sources and weights may differ from the
        checkpoint's: from sample g on, the mixture draws with the new weights, and every source goes on
        from the number of samples it had delivered (0 for a new one; a source left out keeps its count
        for a later return), so none repeats a sample before its epoch ends."""
        mine = self.state_dict()
        for key in ("seed", "block_size", "shuffle_buffer_files"):
            if state[key] != mine[key]:
                raise ValueError(
                    f"data loader state: {key} was {state[key]} in the checkpoint and is {mine[key]} now; the sample "
                    "order would change"
                )
        # the order counts too: the mixture numbers the sources in it
        mix_changed = list(state["weights"].items()) != list(mine["weights"].items())
        if mix_changed and not allow_mix_change:
            raise ValueError(
                f"data loader state: the data mix was {state['weights']} in the checkpoint and is {mine['weights']} "
                "now; "
                f"pass --allow_mix_change to go on with the new mix (PRETRAIN.md, Changing the data mix)"
            )
        describe = lambda s: f"{s['prefix']!r} ({s['files']} files, {s['blocks']} blocks)"  # noqa: E731
        if mix_changed:
            known = {s["prefix"]: s for s in state["sources"]}
            known.update({p: r["fingerprint"] for p, r in state.get("retired_sources", {}).items() if p not in known})
            changes = [
                f"{describe(known[s['prefix']])} is now {describe(s)}"
                for s in mine["sources"]
                if s["prefix"] in known and known[s["prefix"]] != s
            ]
        elif state["sources"] != mine["sources"]:
            was, now = [describe(s) for s in state["sources"]], [describe(s) for s in mine["sources"]]
            changes = (
                [f"{a} is now {b}" for a, b in zip(was, now) if a != b]
                if len(was) == len(now)
                else [f"{was} are now {now}"]
            )
        else:
            changes = []
        if changes:
            raise ValueError(f"data loader state: the sources changed since the checkpoint: {'; '.join(changes)}")
        if state["g"] % self.samples_per_micro_step:
            raise ValueError(
                f"data loader state: {state['g']} samples consumed (saved with micro batch "
                f"{state['micro_batch_size']} x "
                f"world size {state['world_size']}) is not a multiple of the samples per micro step (micro batch x "
                f"world size) {self.dataset.batch} x "
                f"{self.dataset.world_size} = {self.samples_per_micro_step}; resume with a micro batch x world size "
                "that divides it"
            )
        retired = dict(state.get("retired_sources", {}))
        saved_counts = {**{p: r["count"] for p, r in retired.items()}, **state["source_counts"]}
        fingerprints = {s["prefix"]: s for s in state["sources"]}
        for prefix, n in state["source_counts"].items():
            retired[prefix] = {"count": int(n), "fingerprint": fingerprints[prefix]}
        current = [s.prefix for s in self.dataset.sources]
        self.retired = {p: r for p, r in retired.items() if p not in current}
        self.g = int(state["g"])
        self.counts = np.array([saved_counts.get(p, 0) for p in current], np.int64)


def build_train_loader(
    data_dir: str | Path,
    sources: dict[str, float],
    block_size: int = 2048,
    micro_batch_size: int = 8,
    seed: int = 42,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int | None = None,
    shuffle_buffer_files: int = 8,
    pin_memory: bool | None = None,
    vocab_size: int | None = None,
) -> TrainLoader:
    """The training loader over `{data_dir}/{prefix}_*.bin` for each source prefix, mixed by weight
    (the TinyLlama mix is the recipe's: lit_gpt/cli/recipes/tinyllama.yaml). `num_workers` None:
    `default_num_workers()`;
    `pin_memory` None: pinned when CUDA is there. `vocab_size`: every block read is checked against it."""
    num_workers = default_num_workers() if num_workers is None else num_workers
    pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world size {world_size})")
    streams = [
        Source(prefix, find_shards(data_dir, prefix), block_size, seed, shuffle_buffer_files, vocab_size)
        for prefix in sources
    ]
    dataset = ShardStream(streams, Mixture(list(sources.values()), seed), micro_batch_size, rank, world_size)
    return TrainLoader(dataset, num_workers, seed, shuffle_buffer_files, pin_memory=pin_memory)


def default_num_workers() -> int:
    """Loader workers per rank from the CPUs there are: with CUDA, one CPU per rank stays with the
    training process and up to 4 of the others load ahead (hiding slow storage); without CUDA, or with
    no CPU to spare, none, since the main process assembles a batch in well under a millisecond
    (benchmarks/RESULTS.md) and a worker would take a core from the CPU training."""
    if not torch.cuda.is_available():
        return 0
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE") or torch.cuda.device_count() or 1)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cpus // ranks - 1))


class ValLoader:
    """A fixed list of batches: the blocks of the sorted files in order, rank r taking global samples
    g = l * R + r. Every iteration yields the same batches."""

    def __init__(
        self,
        shards: list[ShardInfo],
        block_size: int,
        micro_batch_size: int,
        rank: int,
        world_size: int,
        num_batches: int,
        vocab_size: int | None = None,
    ) -> None:
        self.vocab_size = vocab_size
        self.sample_len, self.batch, self.rank, self.world_size = block_size + 1, micro_batch_size, rank, world_size
        self.shards, self._maps = shards, _LRU(32)
        blocks = np.array([s.tokens // self.sample_len for s in shards], np.int64)
        self.file_start = np.cumsum(blocks) - blocks
        total = int(blocks.sum())
        per_step = micro_batch_size * world_size
        self.num_batches = min(num_batches, total // per_step)
        where = f"{shards[0].path.parent}/{shards[0].path.name.rsplit('_', 1)[0]}_*.bin"
        if self.num_batches == 0:
            raise ValueError(
                f"{where}: {total} validation samples of {self.sample_len} tokens, fewer than one micro batch on "
                f"every rank ({per_step})"
            )
        if self.num_batches < num_batches:
            warnings.warn(
                f"{where}: only {total} validation samples, so {self.num_batches} batches per rank instead of "
                f"{num_batches}"
            )

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[torch.Tensor]:
        for k in range(self.num_batches):
            out = np.empty((self.batch, self.sample_len), np.int64)
            for row, local in enumerate(range(k * self.batch, (k + 1) * self.batch)):
                g = local * self.world_size + self.rank
                f = int(np.searchsorted(self.file_start, g, "right")) - 1
                block = g - self.file_start[f]
                out[row] = self._maps.get_or(f, lambda: open_shard(self.shards[f]))[
                    block * self.sample_len : (block + 1) * self.sample_len
                ]
                check_ids(out[row], self.vocab_size, self.shards[f].path, int(block))
            yield torch.from_numpy(out)


def build_val_loader(
    data_dir: str | Path,
    prefix: str,
    block_size: int,
    micro_batch_size: int,
    rank: int,
    world_size: int,
    num_batches: int,
    vocab_size: int | None = None,
) -> ValLoader:
    return ValLoader(
        find_shards(data_dir, prefix), block_size, micro_batch_size, rank, world_size, num_batches, vocab_size
    )
