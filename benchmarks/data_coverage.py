"""Which blocks the training loader hands to each rank: a run that logs sample ids and checks them.

Builds the real train loader (lit_gpt.data.build_train_loader, with its DataLoader workers) for each
of R ranks over a shard folder, steps them together and identifies every delivered sample by its
content (a hash of its tokens, looked up in an index of every block of every shard), so the check is
end to end: what arrives, not what the loader meant to read. Writes one CSV row per sample (step,
rank, row, global sample, source, file, block, epoch) and prints a verdict:

- no block is delivered twice within an epoch of its source (on any rank), and
- every completed epoch of a source delivered each of its blocks exactly once.

Blocks with identical content are interchangeable: a content read k times is fine if k blocks hold it.

    python benchmarks/data_coverage.py --data_dir data/slim --ranks 2 --workers 2 --micro_batch 8 --block_size 2048

Without --steps it runs until every source has completed one epoch. Exit status 1 on a failed check.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from lit_gpt.cli.shipped import recipe
from lit_gpt.data.shards import open_shard
from lit_gpt.data.stream import build_train_loader, find_shards


def _digest(sample: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(sample, np.int64).tobytes(), digest_size=16).digest()


def index_blocks(data_dir: Path, sources: list[str], block_size: int) -> tuple[dict, dict]:
    """content hash -> [(source, file name, block)], and blocks per source."""
    by_hash, totals, sample_len = defaultdict(list), {}, block_size + 1
    for prefix in sources:
        totals[prefix] = 0
        for shard in find_shards(data_dir, prefix):
            tokens = open_shard(shard)
            n = shard.tokens // sample_len
            for b in range(n):
                by_hash[_digest(tokens[b * sample_len : (b + 1) * sample_len])].append((prefix, shard.path.name, b))
            totals[prefix] += n
    return by_hash, totals


def coverage(
    data_dir: Path,
    ranks: int,
    workers: int,
    micro_batch: int,
    block_size: int,
    sources: dict[str, float],
    seed: int = 42,
    steps: int | None = None,
    log_path: Path | None = None,
) -> dict:
    by_hash, totals = index_blocks(data_dir, list(sources), block_size)
    loaders = [
        build_train_loader(
            data_dir, sources, block_size, micro_batch, seed, rank=r, world_size=ranks, num_workers=workers
        )
        for r in range(ranks)
    ]
    iters = [iter(loader) for loader in loaders]
    records = []  # (step, rank, row, g, digest)
    step = 0
    while (step < steps) if steps is not None else min(loaders[0].epochs.values()) < 1:
        for r, it in enumerate(iters):
            for row, sample in enumerate(next(it).numpy()):
                local = step * micro_batch + row
                records.append((step, r, row, local * ranks + r, _digest(sample)))
        step += 1
    records.sort(key=lambda rec: rec[3])  # global sample order: the order epochs are counted in

    problems, unknown = [], 0
    picks = defaultdict(list)  # source -> digests in global order
    rows = []
    for s, r, row, g, digest in records:
        owners = by_hash.get(digest)
        if owners is None:
            unknown += 1
            rows.append((s, r, row, g, "?", "?", -1, -1))
            continue
        source, name, block = owners[0]
        epoch = len(picks[source]) // totals[source]
        picks[source].append(digest)
        rows.append((s, r, row, g, source, name, block, epoch))
    if unknown:
        problems.append(f"{unknown} delivered samples match no block of the shards")
    epochs_done = {}
    for source, digests in picks.items():
        total = totals[source]
        epochs_done[source] = len(digests) / total
        for e in range(0, len(digests), total):
            counts = Counter(digests[e : e + total])
            repeated = sum(c - len(by_hash[d]) for d, c in counts.items() if c > len(by_hash[d]))
            if repeated:
                problems.append(f"{source} epoch {e // total}: {repeated} blocks delivered more than once")
            if len(digests) - e >= total:
                missing = total - sum(min(c, len(by_hash[d])) for d, c in counts.items())
                if missing:
                    problems.append(f"{source} epoch {e // total}: {missing} of {total} blocks never delivered")
    if log_path:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "rank", "row", "global_sample", "source", "file", "block", "epoch"])
            w.writerows(sorted(rows))
    return dict(
        ok=not problems,
        problems=problems,
        steps=step,
        samples=len(records),
        ranks=ranks,
        workers=workers,
        blocks=totals,
        epochs=epochs_done,
        log=str(log_path) if log_path else None,
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", type=Path, required=True)
    p.add_argument("--sources", default=None, help="JSON prefix -> weight (default: the SlimPajama/Starcoder mix)")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers per rank")
    p.add_argument("--micro_batch", type=int, default=8)
    p.add_argument("--block_size", type=int, default=2048)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--steps", type=int, default=None, help="default: until every source completed an epoch")
    p.add_argument("--log", type=Path, default=Path("benchmarks/results/data_coverage.csv"))
    args = p.parse_args(argv)
    sources = json.loads(args.sources) if args.sources else recipe("tinyllama")["train_sources"]
    result = coverage(
        args.data_dir,
        args.ranks,
        args.workers,
        args.micro_batch,
        args.block_size,
        sources,
        args.seed,
        args.steps,
        args.log,
    )
    print(json.dumps(result))
    print(
        ("PASS" if result["ok"] else "FAIL") + f": {result['samples']} samples over {result['ranks']} ranks x "
        f"{result['workers']} workers, epochs {', '.join(f'{k} {v:.2f}' for k, v in result['epochs'].items())}"
        + "".join(f"\n  {m}" for m in result["problems"])
    )
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
