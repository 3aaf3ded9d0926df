"""Tokenize a raw corpus into packed shards, in parallel, resumably, with a manifest.

Each input file is a unit of work handled by one process. Every document becomes
`BOS + tokens + EOS` and the documents are concatenated; shards hold `chunk_size` tokens except the
unit's last, which is shorter (never padded). Unit u owns the shard counters
[u * 100000, (u + 1) * 100000), so its shard names do not depend on scheduling. A unit counts as done
once all its shards are renamed into place and the main process has appended it to
`{prefix}.progress.jsonl`; a rerun deletes the shards of units not recorded there and redoes them.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lit_gpt.data.manifest import manifest_path, write_json_atomic
from lit_gpt.data.readers import InputLog
from lit_gpt.data.shards import ShardWriter, file_sha256, token_dtype
from lit_gpt.tokenizer import Tokenizer

UNIT_STRIDE = 100_000
MAX_SKIPPED_IN_MANIFEST = 10_000
SEPARATORS = "every document is encoded as BOS + its tokens + EOS and the documents are concatenated; no padding"
Reader = Callable[[Path, InputLog], Iterator[str]]


@dataclass(frozen=True)
class _Job:
    unit: int
    path: Path
    read: Reader
    destination: Path
    prefix: str
    chunk_size: int
    strict: bool
    check_every: int


_tokenizer: Tokenizer | None = None


def _init_worker(tokenizer_path: Path, tokenizer: Tokenizer | None = None) -> None:
    global _tokenizer
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one core per process
    _tokenizer = tokenizer or Tokenizer(tokenizer_path)


def _run_unit(job: _Job) -> dict:
    log = InputLog(job.strict)
    dtype = token_dtype(_tokenizer.vocab_size)
    writer = ShardWriter(job.destination, job.prefix, job.chunk_size, dtype, job.unit * UNIT_STRIDE, UNIT_STRIDE)
    documents = tokens = 0
    batch: list[str] = []

    def flush() -> None:
        nonlocal tokens
        ids = _tokenizer.encode_flat(batch, bos=True, eos=True, dtype=dtype, check_every=job.check_every)
        writer.add(ids)
        tokens += len(ids)
        batch.clear()

    try:
        batch_chars = 0
        for text in job.read(job.path, log):
            batch.append(text)
            documents += 1
            batch_chars += len(text)
            if batch_chars >= 1 << 20 or len(batch) >= 1024:
                flush()
                batch_chars = 0
        flush()
        shards = writer.close()
    except BaseException:
        for name, _ in writer.written:  # an unfinished unit leaves nothing behind
            (job.destination / name).unlink(missing_ok=True)
        raise
    return {
        "unit": job.unit,
        "documents": documents,
        "tokens": tokens,
        "shards": shards,
        "sha256": writer.checksums,
        "skipped": log.skipped,
        "dropped": dict(log.dropped),
    }


def _read_journal(path: Path, config: dict) -> dict[int, dict]:
    """Finished units from the progress journal; a torn last line (crash while appending) is ignored."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])["config"]
    if header != config:
        changed = sorted(k for k in config.keys() | header.keys() if config.get(k) != header.get(k))
        raise ValueError(
            f"{path}: an earlier run into this folder used other settings (changed: {', '.join(changed)}); "
            "use another destination, or delete its shards, manifest and progress file"
        )
    done = {}
    for line in lines[1:]:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        done[record["unit"]] = record
    return done


def _append(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def prepare(
    inputs: list[Path],
    source_root: Path,
    read: Reader,
    tokenizer_path: Path,
    destination: Path,
    prefix: str,
    chunk_size: int = 2049 * 1024,
    num_processes: int | None = None,
    strict: bool = False,
    check_every: int = 64,
    settings: dict | None = None,
) -> dict:
    """Tokenize `inputs` (each read with `read`) into `{destination}/{prefix}_*.bin`; returns the manifest.

    `check_every`: every n-th document is also encoded by the reference tokenizer and compared (0: never).
    `settings`: what else decides the output (the reader's options); a resumed run must have the same.
    Raises BadInputError on bad input when `strict`.
    """
    if not inputs:
        raise FileNotFoundError(f"{source_root}: no input files found")
    destination.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(tokenizer_path)
    if tokenizer.bos_id is None or tokenizer.eos_id is None:
        raise ValueError(f"{tokenizer.path}: BOS and EOS tokens are needed as document separators")
    if tokenizer.backend == "sentencepiece" and tokenizer.fast_encoder is None:
        # said once per run, here in the main process: the workers take the same (slower) path silently
        warnings.warn(
            f"{tokenizer.path}: fast tokenization is off, {tokenizer.fast_encoder_refusal}; encoding with "
            "SentencePiece itself (same ids, slower)"
        )
    identity = tokenizer.identity()
    files = [p.relative_to(source_root).as_posix() for p in inputs]
    config = {
        "prefix": prefix,
        "chunk_size": chunk_size,
        "tokenizer_sha256": identity["sha256"],
        "files": files,
        **(settings or {}),
    }

    journal = destination / f"{prefix}.progress.jsonl"
    name = re.compile(rf"\.?{re.escape(prefix)}_(\d+)\.bin(\.tmp)?")
    on_disk = {p: name.fullmatch(p.name) for p in destination.iterdir()}
    on_disk = {p: m for p, m in on_disk.items() if m}
    if journal.exists():
        done = _read_journal(journal, config)
    elif on_disk:
        raise ValueError(
            f"{destination}: holds {len(on_disk)} {prefix}_*.bin files but no {journal.name}; refusing to mix runs"
        )
    else:
        done = {}
        _append(journal, {"config": config})
    # A finished unit whose shards went missing is redone too.
    done = {u: r for u, r in done.items() if all((destination / n).exists() for n, _ in r["shards"])}
    for path, match in on_disk.items():
        if match.group(2) or int(match.group(1)) // UNIT_STRIDE not in done:
            path.unlink()
    manifest_path(destination, prefix).unlink(missing_ok=True)

    jobs = [
        _Job(u, p, read, destination, prefix, chunk_size, strict, check_every)
        for u, p in enumerate(inputs)
        if u not in done
    ]
    num_processes = max(1, min(num_processes or os.cpu_count() or 1, len(jobs) or 1))
    bar = tqdm(total=len(inputs), initial=len(inputs) - len(jobs), unit="file", desc=prefix, dynamic_ncols=True)
    start, documents, tokens = time.perf_counter(), 0, 0
    pool = (
        multiprocessing.get_context("spawn").Pool(num_processes, _init_worker, (tokenizer_path,))
        if num_processes > 1
        else None
    )
    try:
        if pool is None:
            _init_worker(tokenizer_path, tokenizer)
        results = pool.imap_unordered(_run_unit, jobs) if pool else map(_run_unit, jobs)
        for record in results:
            _append(journal, record)
            done[record["unit"]] = record
            documents, tokens = documents + record["documents"], tokens + record["tokens"]
            elapsed = time.perf_counter() - start
            bar.set_postfix_str(f"{documents / elapsed:,.0f} docs/s, {tokens / elapsed:,.0f} tokens/s")
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()

    records = [done[u] for u in range(len(inputs))]
    skipped = [row for r in records for row in r["skipped"]]
    manifest = {
        "prefix": prefix,
        "format": {"shard": "LITPKDS v1", "dtype": token_dtype(tokenizer.vocab_size).name, "chunk_size": chunk_size},
        "sources": {"root": str(source_root), "files": files},
        "documents": sum(r["documents"] for r in records),
        "tokens": sum(r["tokens"] for r in records),
        "skipped": {
            "count": len(skipped),
            "by_reason": dict(Counter(row["reason"].split(" (")[0] for row in skipped)),
            "rows": skipped[:MAX_SKIPPED_IN_MANIFEST],
        },
        "dropped": dict(sum((Counter(r["dropped"]) for r in records), Counter())),
        "separators": {"bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id, "layout": SEPARATORS},
        "tokenizer": identity,
        **({"settings": settings} if settings else {}),
        # sizes too: training checks them at start; checksums on request (lit_gpt/data/integrity.py). A unit
        # journaled by an older version has no checksums: its shards are read once here.
        "shards": [
            {
                "file": n,
                "tokens": t,
                "bytes": (Path(destination) / n).stat().st_size,
                "sha256": r.get("sha256", {}).get(n) or file_sha256(Path(destination) / n),
            }
            for r in records
            for n, t in r["shards"]
        ],
    }
    write_json_atomic(manifest_path(destination, prefix), manifest)
    return manifest


def slimpajama_files(source_path: Path, split: str) -> list[Path]:
    """The `.jsonl.zst` files of one SlimPajama split, sorted (never glob order)."""
    files = sorted((Path(source_path) / split).glob("chunk*/example_*.jsonl.zst"))
    if not files:
        raise FileNotFoundError(f"no {split}/chunk*/example_*.jsonl.zst files under {source_path}")
    return files


def starcoder_files(source_path: Path, languages: list[str] | None = None) -> list[Path]:
    """The `train-*.parquet` files of the chosen Starcoderdata language folders (default all), sorted."""
    source_path = Path(source_path)
    available = sorted(p.name for p in source_path.iterdir() if p.is_dir()) if source_path.is_dir() else []
    unknown = sorted(set(languages or ()) - set(available))
    if unknown:
        raise FileNotFoundError(f"no language folder {unknown} under {source_path} (available: {available})")
    files = sorted(f for lang in (languages or available) for f in (source_path / lang).glob("train-*.parquet"))
    if not files:
        raise FileNotFoundError(f"no {{language}}/train-*.parquet files under {source_path}")
    return files
