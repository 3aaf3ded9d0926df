"""Preparation wall time against the number of processes.

Copies the sample corpus's SlimPajama-style train files `--copies` times (so there are enough input
files to spread) and prepares them with `lit_gpt.data.prepare` for each process count, with the
tokenizer of `--kind` (see prepare_throughput.build_tokenizer). Reports wall time, tokens/s and the
speed-up over the first process count. Process start-up (spawn, tokenizer load) is included: it is part of a run.

    python benchmarks/prepare_scaling.py --processes '[1,2]'                       # the 2-core CPU
    python benchmarks/prepare_scaling.py --processes '[1,2,4,8,16]' --copies 32    # a 16-core machine
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Literal

from jsonargparse import CLI
from prepare_throughput import SAMPLE, build_tokenizer

from lit_gpt.data import prepare, read_slimpajama


def main(
    processes: list[int] = [1, 2],
    copies: int = 8,
    kind: Literal["sample", "llama2_shaped", "hf_byte_level"] = "llama2_shaped",
) -> None:
    """Args:
    processes: process counts to measure.
    copies: copies of the sample's SlimPajama train files (each copy is a set of input files).
    kind: the tokenizer to build.
    """
    tmp = Path(tempfile.mkdtemp())
    try:
        tokenizer = build_tokenizer(kind, tmp / "tokenizer")
        originals = sorted((SAMPLE / "slimpajama" / "train").glob("chunk*/*.jsonl.zst"))
        inputs = []
        for c in range(copies):
            for i, path in enumerate(originals):
                inputs.append(tmp / "in" / f"copy{c:03d}_{i}.jsonl.zst")
                inputs[-1].parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, inputs[-1])
        print(f"{len(inputs)} input files, tokenizer {kind}, {len(os.sched_getaffinity(0))} CPUs")
        print("| processes | wall s | M tokens/s | speed-up |")
        print("|---|---|---|---|")
        first = None
        for n in processes:
            start = time.perf_counter()
            manifest = prepare(
                inputs, tmp / "in", read_slimpajama, tokenizer, tmp / f"out{n}", "train_x", num_processes=n
            )
            wall = time.perf_counter() - start
            first = first or wall
            print(f"| {n} | {wall:.2f} | {manifest['tokens'] / wall / 1e6:.2f} | {first / wall:.2f}x |")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    CLI(main, as_positional=False)
