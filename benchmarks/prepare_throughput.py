"""Tokenization throughput per core: the prepare pipeline vs a naive one-document-at-a-time loop.

Both run in this single process on the sample corpus (SlimPajama train + validation, Starcoder) with
the same SentencePiece tokenizer, alternately, `--repeats` times; the best run of each is reported
(wall time and this process's CPU time, tokens per second). The naive loop reads lines with
`json.loads`, calls `sp.encode` per document and builds one `np.array` per document. The pipeline is
`lit_gpt.data.prepare` with one process (reading, encoding with `encode_flat`, checking every 64th
document against SentencePiece, writing shards). Both token streams must be identical.

    python benchmarks/prepare_throughput.py [--tokenizer_path DIR] 2>/dev/null  # stderr: progress bars
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow.parquet as pq
import sentencepiece as spm
import zstandard
from jsonargparse import CLI

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lit_gpt.data import InputLog, open_shard, prepare, read_header, read_slimpajama, read_starcoder  # noqa: E402

SAMPLE = ROOT / "data" / "sample"


def naive(slim_files: list[Path], code_files: list[Path], model: Path) -> list[np.ndarray]:
    sp = spm.SentencePieceProcessor(model_file=str(model))
    bos, eos = sp.bos_id(), sp.eos_id()
    out = []
    for path in slim_files:
        with zstandard.ZstdDecompressor().stream_reader(open(path, "rb")) as fh:
            for line in io.TextIOWrapper(fh, encoding="utf-8"):
                row = json.loads(line)
                if row["meta"]["redpajama_set_name"] != "RedPajamaGithub":
                    out.append(np.array([bos] + sp.encode(row["text"]) + [eos], np.uint16))
    for path in code_files:
        for batch in pq.ParquetFile(path).iter_batches(columns=["content"]):
            for text in batch.column(0).to_pylist():
                out.append(np.array([bos] + sp.encode(text) + [eos], np.uint16))
    return out


def pipeline(slim_files: list[Path], code_files: list[Path], tokenizer: Path, out: Path) -> np.ndarray:
    prepare(slim_files, SAMPLE / "slimpajama", read_slimpajama, tokenizer, out / "slim", "slim", num_processes=1)
    prepare(code_files, SAMPLE / "starcoder", read_starcoder, tokenizer, out / "code", "code", num_processes=1)
    files = sorted((out / "slim").glob("slim_*.bin")) + sorted((out / "code").glob("code_*.bin"))
    return np.concatenate([open_shard(read_header(p)) for p in files])


def timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main(tokenizer_path: Optional[Path] = None, repeats: int = 3) -> None:
    """Args:
        tokenizer_path: folder with `tokenizer.model`; default: train the sample tokenizer (vocab 4096).
        repeats: runs of each path; the best is reported.
    """
    tmp = Path(tempfile.mkdtemp())
    if tokenizer_path is None:
        from lit_gpt.data.tokenizer_training import train_tokenizer

        tokenizer_path = tmp / "tokenizer"
        train_tokenizer(out_dir=tokenizer_path)
    slim = sorted(SAMPLE.glob("slimpajama/*/chunk*/*.jsonl.zst"))
    code = sorted(SAMPLE.glob("starcoder/*/*.parquet"))
    chars = sum(len(t) for f in slim for t in read_slimpajama(f, InputLog())) + sum(len(t) for f in code for t in read_starcoder(f, InputLog()))
    best = {"naive": (np.inf, np.inf), "pipeline": (np.inf, np.inf)}
    for r in range(repeats):
        docs, wall, cpu = timed(naive, slim, code, tokenizer_path / "tokenizer.model")
        best["naive"] = min(best["naive"], (wall, cpu))
        tokens, wall, cpu = timed(pipeline, slim, code, tokenizer_path, tmp / f"run{r}")
        best["pipeline"] = min(best["pipeline"], (wall, cpu))
        assert np.array_equal(np.concatenate(docs), tokens), "the pipeline's tokens differ from the naive loop's"
    n = len(tokens)
    print(f"corpus: {len(docs)} documents, {chars / 1e6:.1f} M characters, {n / 1e6:.2f} M tokens (identical in both paths)")
    for name, (wall, cpu) in best.items():
        print(f"{name:8s}: {wall:6.2f} s wall, {cpu:6.2f} s CPU, {n / wall / 1e6:.2f} M tokens/s/core (wall), {n / cpu / 1e6:.2f} M tokens/s/core (CPU)")
    speedup = best["naive"][0] / best["pipeline"][0], best["naive"][1] / best["pipeline"][1]
    print(f"speed-up per core: {speedup[0]:.2f}x (wall), {speedup[1]:.2f}x (CPU)")


if __name__ == "__main__":
    CLI(main, as_positional=False)
