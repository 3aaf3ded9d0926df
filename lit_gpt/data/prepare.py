"""Tokenize a raw corpus into packed shards, in parallel, resumably, with a manifest.

Each input file is a unit of work handled by one process. Every document becomes
`BOS + tokens + EOS` and the documents are concatenated. Training cuts samples of block_size + 1
tokens from each shard and never reads a shard's remainder, so every shard but a source's last holds
whole samples: a unit writes shards of `chunk_size` tokens (a multiple of the sample length) and a last,
shorter one of whole samples, and keeps its tail (fewer tokens than one sample) in
`.{prefix}.tails/{unit}.bin`. When every unit is done, the main process writes the tails, in unit
order, as the source's last shards: only the very last partial sample of the source is never read,
and the manifest counts it. Nothing is ever padded.

Unit u owns the shard counters [u * 100000, (u + 1) * 100000), the tails the range after the last
unit's, so shard names do not depend on scheduling. A unit counts as done once its shards and its tail
are renamed into place and the main process has appended it to `{prefix}.progress.jsonl`; a rerun
deletes the shards of units not recorded there (and the tails' shards) and redoes them.
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
from lit_gpt.data.shards import (
    ShardWriter,
    check_prefix,
    file_sha256,
    open_shard,
    read_header,
    token_dtype,
    unreadable_tokens,
    write_shard,
)
from lit_gpt.data.workers import exit_with_parent
from lit_gpt.tokenizer import Tokenizer

UNIT_STRIDE = 100_000
MAX_SKIPPED_IN_MANIFEST = 10_000
BLOCK_SIZE = 2048  # TinyLlama's: samples of 2049 tokens
CHUNK_SIZE = (BLOCK_SIZE + 1) * 1024  # TinyLlama's shard size
SEPARATORS = (
    "every document is encoded as BOS + its tokens + EOS and the documents are concatenated; no padding; the "
    "tokens after each input file's last whole sample of block_size + 1 follow, in input order, at the end"
)
Reader = Callable[[Path, InputLog], Iterator[str]]


@dataclass(frozen=True)
class _Job:
    unit: int
    path: Path
    read: Reader
    destination: Path
    prefix: str
    chunk_size: int
    sample_len: int
    strict: bool
    check_every: int


_tokenizer: Tokenizer | None = None


def _init_worker(tokenizer_path: Path, parent_pid: int | None = None, tokenizer: Tokenizer | None = None) -> None:
    global _tokenizer
    if parent_pid is not None:
        exit_with_parent(parent_pid)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one core per process
    _tokenizer = tokenizer or Tokenizer(tokenizer_path)


def tail_path(destination: Path, prefix: str, unit: int) -> Path:
    """Where unit `unit` keeps the tokens after its last whole sample until the tails are written."""
    return Path(destination) / f".{prefix}.tails" / f"{unit:010d}.bin"


def check_options(prefix: str, chunk_size: int, block_size: int, num_processes: int | None) -> None:
    """Raise ValueError naming the option when a prepare setting is out of range: checked before any work."""
    check_prefix(prefix)
    if block_size < 1:
        raise ValueError(f"--block_size {block_size}: must be at least 1 (the training block size)")
    sample = block_size + 1
    if chunk_size < 1 or chunk_size % sample:
        k = max(1, round(chunk_size / sample)) if chunk_size > 0 else 1024
        raise ValueError(
            f"--chunk_size {chunk_size}: must be a positive multiple of block_size + 1 = {sample} (--block_size "
            f"{block_size}), so that every shard holds whole training samples; e.g. {sample} x {k} = {sample * k}"
        )
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"--num_processes {num_processes}: must be at least 1")


def _run_unit(job: _Job) -> dict:
    log = InputLog(job.strict)
    dtype = token_dtype(_tokenizer.vocab_size)
    writer = ShardWriter(job.destination, job.prefix, job.chunk_size, dtype, job.unit * UNIT_STRIDE, UNIT_STRIDE)
    tail_file = tail_path(job.destination, job.prefix, job.unit)
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
        tail = writer.close_keeping_tail(job.sample_len)
        tail_sha256 = write_shard(tail_file, tail)
    except BaseException:
        for name, _ in writer.written:  # an unfinished unit leaves nothing behind
            (job.destination / name).unlink(missing_ok=True)
        tail_file.unlink(missing_ok=True)
        raise
    return {
        "unit": job.unit,
        "documents": documents,
        "tokens": tokens,  # its shards' and its tail's
        "shards": writer.written,
        "sha256": writer.checksums,
        "tail": {"tokens": len(tail), "sha256": tail_sha256},
        "skipped": log.skipped,
        "dropped": dict(log.dropped),
    }


def _finished(destination: Path, prefix: str, record: dict) -> bool:
    """A journaled unit whose shards are all there and whose tail is intact (it is read again later)."""
    tail = tail_path(destination, prefix, record["unit"])
    return (
        all((destination / n).exists() for n, _ in record["shards"])
        and tail.is_file()
        and file_sha256(tail) == record["tail"]["sha256"]
    )


def _write_tails(destination: Path, prefix: str, units: int, chunk_size: int, dtype) -> ShardWriter:
    """The units' tails, in unit order, as the source's last shards (the counters after the last unit's)."""
    writer = ShardWriter(destination, prefix, chunk_size, dtype, units * UNIT_STRIDE, UNIT_STRIDE)
    for unit in range(units):
        writer.add(open_shard(read_header(tail_path(destination, prefix, unit))))
    writer.close()
    return writer


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
    chunk_size: int = CHUNK_SIZE,
    num_processes: int | None = None,
    strict: bool = False,
    check_every: int = 64,
    settings: dict | None = None,
    block_size: int = BLOCK_SIZE,
) -> dict:
    """Tokenize `inputs` (each read with `read`) into `{destination}/{prefix}_*.bin`; returns the manifest.

    `block_size`: the training block size the shards are cut for (samples of block_size + 1 tokens);
    `chunk_size` must be a multiple of block_size + 1.
    `check_every`: every n-th document is also encoded by the reference tokenizer and compared (0: never).
    `settings`: what else decides the output (the reader's options); a resumed run must have the same.
    Raises BadInputError on bad input when `strict`.
    """
    check_options(prefix, chunk_size, block_size, num_processes)
    if check_every < 0:
        raise ValueError(f"check_every {check_every}: must be 0 (never) or more")
    if not inputs:
        raise FileNotFoundError(f"{source_root}: no input files found")
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    tail_path(destination, prefix, 0).parent.mkdir(exist_ok=True)
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
        "block_size": block_size,
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
    # A finished unit whose shards or tail went missing is redone too; the tails' shards are always rewritten.
    done = {u: r for u, r in done.items() if _finished(destination, prefix, r)}
    for path, match in on_disk.items():
        if match.group(2) or int(match.group(1)) // UNIT_STRIDE not in done:
            path.unlink()
    manifest_path(destination, prefix).unlink(missing_ok=True)

    jobs = [
        _Job(u, p, read, destination, prefix, chunk_size, block_size + 1, strict, check_every)
        for u, p in enumerate(inputs)
        if u not in done
    ]
    num_processes = max(1, min(num_processes or os.cpu_count() or 1, len(jobs) or 1))
    bar = tqdm(total=len(inputs), initial=len(inputs) - len(jobs), unit="file", desc=prefix, dynamic_ncols=True)
    start, documents, tokens = time.perf_counter(), 0, 0
    pool = (
        multiprocessing.get_context("spawn").Pool(num_processes, _init_worker, (tokenizer_path, os.getpid()))
        if num_processes > 1
        else None
    )
    try:
        if pool is None:
            _init_worker(tokenizer_path, tokenizer=tokenizer)
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
    dtype = token_dtype(tokenizer.vocab_size)
    tails = _write_tails(destination, prefix, len(inputs), chunk_size, dtype)
    skipped = [row for r in records for row in r["skipped"]]
    shards = [(n, t, r.get("sha256", {}).get(n)) for r in records for n, t in r["shards"]]
    shards += [(n, t, tails.checksums[n]) for n, t in tails.written]
    manifest = {
        "prefix": prefix,
        "format": {"shard": "LITPKDS v1", "dtype": dtype.name, "chunk_size": chunk_size, "block_size": block_size},
        "sources": {"root": str(source_root), "files": files},
        "documents": sum(r["documents"] for r in records),
        "tokens": sum(r["tokens"] for r in records),
        # in no whole sample of block_size + 1 tokens: at most the source's last partial sample
        "unreadable_tokens": unreadable_tokens((t for _, t, _ in shards), block_size + 1),
        "skipped": {
            "count": len(skipped),
            "by_reason": dict(Counter(row["reason"].split(" (")[0] for row in skipped)),
            "rows": skipped[:MAX_SKIPPED_IN_MANIFEST],
        },
        "dropped": dict(sum((Counter(r["dropped"]) for r in records), Counter())),
        "separators": {"bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id, "layout": SEPARATORS},
        "tokenizer": identity,
        **({"settings": settings} if settings else {}),
        # sizes too: training checks them at start; checksums on request (lit_gpt/data/integrity.py)
        "shards": [
            {
                "file": n,
                "tokens": t,
                "bytes": (destination / n).stat().st_size,
                "sha256": sha256 or file_sha256(destination / n),
            }
            for n, t, sha256 in shards
        ],
    }
    write_json_atomic(manifest_path(destination, prefix), manifest)
    return manifest


def summary(manifest: dict) -> str:
    """The command's last line: what was written, and how much of it training can never read."""
    sample = manifest["format"]["block_size"] + 1
    tokens, unread = manifest["tokens"], manifest["unreadable_tokens"]
    return (
        f"{manifest['prefix']}: {manifest['documents']:,} documents, {tokens:,} tokens in {len(manifest['shards'])} "
        f"shards: {tokens - unread:,} in whole samples of block_size + 1 = {sample} tokens, {unread:,} in no whole "
        f"sample (never read); {manifest['skipped']['count']} inputs skipped; dropped: {manifest['dropped'] or 'none'}"
    )


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
