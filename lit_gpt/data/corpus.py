"""Your own corpus into packed shards: any mix of `.jsonl`, `.jsonl.gz`, `.jsonl.zst`, `.parquet`,
`.txt` and Arrow files (a `datasets.save_to_disk` folder), with a length filter, exact-duplicate
removal and a validation split, written as sources `train_{source}` and `validation_{source}`.

Two passes, both parallel over input files and both resumable:

1. Fingerprints: every document that passes the readers' checks gets a 128-bit BLAKE2b digest of its
   text and a "too short" flag, saved per input file under `.{source}.corpus/` (reused while the
   file's size and modification time are unchanged). From all of them the main process assigns each
   document: dropped as too short, dropped as an exact duplicate of an earlier document (earlier in
   sorted file order, then in file order), or kept in the validation split (when the digest, read as a
   fraction of 2^64, is below the fraction: random-like, fixed, and the same for equal texts) or in
   the train split.
2. `lit_gpt.data.prepare.prepare` once per split, with a reader that skips the documents not assigned
   to that split: same shards, manifest, progress journal, resume and bad-input rules as the
   SlimPajama script. Its manifests count the documents dropped and why.
"""

from __future__ import annotations

import glob
import hashlib
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lit_gpt.data.prepare import BLOCK_SIZE, CHUNK_SIZE, check_options, prepare
from lit_gpt.data.readers import InputLog, read_arrow, read_jsonl, read_parquet, read_text_file
from lit_gpt.data.shards import check_prefix
from lit_gpt.data.workers import exit_with_parent

SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet", ".txt", ".arrow")
DUPLICATE, TRAIN, VALIDATION, SHORT = 0, 1, 2, 3


def _kind(path: Path) -> str | None:
    return next((s for s in SUFFIXES if path.name.endswith(s)), None)


def corpus_files(inputs: list[str | Path]) -> tuple[list[Path], Path]:
    """The input files (folders searched recursively for the supported suffixes, globs expanded),
    sorted and without repeats, and the folder their names are given relative to."""
    found: set[Path] = set()
    for item in map(str, inputs):
        if glob.has_magic(item):  # matches of other kinds are passed over, as inside folders
            paths = [Path(p) for p in sorted(glob.glob(item, recursive=True)) if Path(p).is_dir() or _kind(Path(p))]
        else:
            paths = [Path(item)]
        if not paths or not all(p.exists() for p in paths):
            raise FileNotFoundError(f"{item}: no such file or folder")
        for path in paths:
            if path.is_dir():
                found.update(p for p in path.rglob("*") if p.is_file() and _kind(p) and not p.name.startswith("."))
            elif _kind(path):
                found.add(path)
            else:
                raise ValueError(f"{path}: not a supported input ({', '.join(SUFFIXES)})")
    if not found:
        raise FileNotFoundError(f"no {', '.join(SUFFIXES)} files in {[str(i) for i in inputs]}")
    files = sorted(p.resolve() for p in found)
    return files, Path(os.path.commonpath([p.parent for p in files]))


def read_any(path: Path, log: InputLog, field: str) -> Iterator[str]:
    """The documents of one input file, by its suffix (`field`: JSON field or column of the text)."""
    kind = _kind(path)
    if kind == ".txt":
        return read_text_file(path, log)
    if kind == ".parquet":
        return read_parquet(path, log, field)
    if kind == ".arrow":
        return read_arrow(path, log, field)
    return read_jsonl(path, log, field)


def _fingerprint_path(work: Path, path: Path) -> Path:
    return work / f"{hashlib.sha1(str(path).encode()).hexdigest()[:20]}.npz"


@dataclass(frozen=True)
class _Fingerprint:
    path: Path
    out: Path
    field: str
    min_chars: int
    strict: bool


def _fingerprint(job: _Fingerprint) -> int:
    digests, short = [], []
    for text in read_any(job.path, InputLog(job.strict), job.field):  # bad input is recorded by pass 2
        digests.append(hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest())
        short.append(len(text) < job.min_chars)
    stat = job.path.stat()
    tmp = job.out.with_name(f".{job.out.stem}.tmp.npz")
    np.savez(
        tmp,
        digests=np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 16),
        short=np.array(short, bool),
        stamp=np.array([stat.st_size, stat.st_mtime_ns], np.int64),
    )
    os.replace(tmp, job.out)
    return len(digests)


def _current(out: Path, path: Path) -> bool:
    if not out.is_file():
        return False
    stat = path.stat()
    with np.load(out) as saved:
        return saved["stamp"].tolist() == [stat.st_size, stat.st_mtime_ns]


@dataclass(frozen=True)
class AssignedReader:
    """A prepare() reader that yields only the documents assigned to `split` (picklable for workers)."""

    work: Path
    field: str
    split: int
    min_chars: int

    def __call__(self, path: Path, log: InputLog) -> Iterator[str]:
        assigned = np.load(_fingerprint_path(self.work, path).with_suffix(".split.npy"))
        n = -1
        for n, text in enumerate(read_any(path, log, self.field)):
            if n >= len(assigned):
                break
            code = assigned[n]
            if code == self.split:
                yield text
            elif code == SHORT:
                log.drop(f"shorter than {self.min_chars} characters")
            elif code == DUPLICATE:
                log.drop("exact duplicate")
            else:
                log.drop("in the validation split" if code == VALIDATION else "in the train split")
        if n + 1 != len(assigned):
            raise RuntimeError(
                f"{path}: changed while it was being prepared ({n + 1} documents now, {len(assigned)} when "
                "fingerprinted); run again"
            )


def assign(
    fingerprints: list[tuple[np.ndarray, np.ndarray]], dedup: bool, validation_fraction: float
) -> list[np.ndarray]:
    """Per file, each document's fate: SHORT, DUPLICATE, VALIDATION or TRAIN (see the module docstring)."""
    digests = np.concatenate([d for d, _ in fingerprints]) if fingerprints else np.empty((0, 16), np.uint8)
    short = np.concatenate([s for _, s in fingerprints]) if fingerprints else np.empty(0, bool)
    fate = np.full(len(digests), TRAIN, np.uint8)
    if validation_fraction > 0:
        position = digests[:, :8].copy().view("<u8")[:, 0] / 2.0**64
        fate[position < validation_fraction] = VALIDATION
    if dedup:
        candidates = np.flatnonzero(~short)
        keys = np.ascontiguousarray(digests[candidates]).view(np.dtype((np.void, 16)))[:, 0]
        _, first = np.unique(keys, return_index=True)
        duplicate = np.ones(len(candidates), bool)
        duplicate[first] = False
        fate[candidates[duplicate]] = DUPLICATE
    fate[short] = SHORT
    return np.split(fate, np.cumsum([len(s) for _, s in fingerprints])[:-1])


def prepare_corpus(
    inputs: list[str | Path],
    tokenizer_path: Path,
    destination: Path,
    source: str,
    field: str = "text",
    min_chars: int = 0,
    dedup: bool = True,
    validation_fraction: float = 0.0,
    chunk_size: int = CHUNK_SIZE,
    num_processes: int | None = None,
    strict: bool = False,
    block_size: int = BLOCK_SIZE,
) -> dict[str, dict]:
    """Prepare `inputs` into `{destination}/train_{source}_*.bin` (and `validation_{source}_*.bin` when
    `validation_fraction` > 0); returns the manifests by prefix."""
    check_prefix(source, "--source")
    check_options(f"train_{source}", chunk_size, block_size, num_processes)
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"--validation_fraction {validation_fraction} is not in [0, 1)")
    if min_chars < 0:
        raise ValueError(f"--min_chars {min_chars}: must be 0 (keep every document) or more")
    files, root = corpus_files(inputs)
    destination = Path(destination)
    work = destination / f".{source}.corpus"
    work.mkdir(parents=True, exist_ok=True)
    jobs = [_Fingerprint(p, _fingerprint_path(work, p), field, min_chars, strict) for p in files]
    todo = [j for j in jobs if not _current(j.out, j.path)]
    processes = max(1, min(num_processes or os.cpu_count() or 1, len(todo) or 1))
    bar = tqdm(
        total=len(jobs), initial=len(jobs) - len(todo), unit="file", desc=f"{source} fingerprints", dynamic_ncols=True
    )
    spawn = multiprocessing.get_context("spawn")
    pool = spawn.Pool(processes, exit_with_parent, (os.getpid(),)) if processes > 1 else None
    try:
        for _ in pool.imap_unordered(_fingerprint, todo) if pool else map(_fingerprint, todo):
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()

    def load(job):
        with np.load(job.out) as saved:
            return saved["digests"], saved["short"]

    fates = assign([load(j) for j in jobs], dedup, validation_fraction)
    for job, fate in zip(jobs, fates):
        target = job.out.with_suffix(".split.npy")
        if not target.is_file() or not np.array_equal(np.load(target), fate):
            np.save(target.with_name(f".{target.name}.tmp.npy"), fate)
            os.replace(target.with_name(f".{target.name}.tmp.npy"), target)
    # The assignment's digest makes a resumed run refuse to continue if any document's fate changed.
    fingerprint = hashlib.sha256(b"".join(f.tobytes() + b"|" for f in fates)).hexdigest()
    settings = {
        "field": field,
        "min_chars": min_chars,
        "dedup": dedup,
        "validation_fraction": validation_fraction,
        "assignment_sha256": fingerprint,
    }
    splits = [("train", TRAIN)] + ([("validation", VALIDATION)] if validation_fraction > 0 else [])
    manifests = {}
    for split, code in splits:
        prefix = f"{split}_{source}"
        manifests[prefix] = prepare(
            files,
            root,
            AssignedReader(work, field, code, min_chars),
            tokenizer_path,
            destination,
            prefix,
            chunk_size,
            num_processes,
            strict,
            settings=settings,
            block_size=block_size,
        )
    return manifests
