"""Rebuild the small sample corpus shipped in `lit_gpt/cli/demo_data/sample/` (Python docs and CPython stdlib, PSF
License).

It mimics the two real pretraining corpora so every pipeline stage can run offline:

- SlimPajama layout from the reStructuredText sources of the Python documentation (Debian package
  `python3.11-doc`): `slimpajama/{train,validation}/chunk1/example_{train,holdout}_{i}.jsonl.zst`,
  one JSON row per document `{"text": ..., "meta": {"redpajama_set_name": ...}}`, every tenth
  document in validation, plus a few `RedPajamaGithub` rows (stdlib modules) that preparation drops.
- Starcoderdata layout from `/usr/lib/python3.11/*.py`:
  `starcoder/python/train-{i:05d}-of-{n:05d}.parquet` with `content`, `max_stars_repo_path`,
  `max_stars_repo_name` and `id` columns.

Files are picked by a hash of their path until a size budget is reached, so the subset is spread over
the whole documentation and the output is byte-identical for the same inputs.

    apt-get install -y python3.11-doc
    python scripts/build_sample_corpus.py
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from jsonargparse import CLI

# Which RedPajama subset each documentation folder pretends to be.
SET_BY_FOLDER = {
    "library": "RedPajamaWikipedia",
    "c-api": "RedPajamaArXiv",
    "reference": "RedPajamaArXiv",
    "faq": "RedPajamaStackExchange",
    "whatsnew": "RedPajamaCommonCrawl",
    "": "RedPajamaC4",
}
DEFAULT_SET = "RedPajamaBook"  # tutorial, howto, using, extending, ...


def _pick(paths: list[Path], root: Path, budget_bytes: int) -> list[Path]:
    """A deterministic, well-spread subset: files in order of a path hash, until the budget is used."""
    by_hash = sorted(paths, key=lambda p: hashlib.sha256(p.relative_to(root).as_posix().encode()).hexdigest())
    picked, used = [], 0
    for path in by_hash:
        size = path.stat().st_size
        if used + size > budget_bytes:
            continue
        picked.append(path)
        used += size
    return sorted(picked)


def _write_jsonl_zst(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    path.write_bytes(zstandard.ZstdCompressor(level=19).compress(data))


def build_sample_corpus(
    docs_root: Path = Path("/usr/share/doc/python3.11/html/_sources"),
    stdlib_root: Path = Path("/usr/lib/python3.11"),
    out_dir: Path = Path(__file__).resolve().parents[1] / "lit_gpt" / "cli" / "demo_data" / "sample",
    docs_budget_mb: float = 9.0,
    code_budget_mb: float = 2.5,
    train_files: int = 4,
    validation_files: int = 2,
    parquet_files: int = 3,
    github_rows: int = 6,
) -> None:
    """Write the sample corpus.

    Args:
        docs_root: the `_sources` folder of the Python HTML documentation (`.rst.txt` files).
        stdlib_root: the folder holding the CPython standard library modules (`*.py`).
        out_dir: where `slimpajama/` and `starcoder/` are (re)created.
        docs_budget_mb: uncompressed size of the documentation subset, in MB.
        code_budget_mb: uncompressed size of the stdlib subset, in MB.
        train_files: number of `.jsonl.zst` files of the train split.
        validation_files: number of `.jsonl.zst` files of the validation split.
        parquet_files: number of parquet files of the code subset.
        github_rows: number of `RedPajamaGithub` rows mixed into SlimPajama (preparation must drop them).
    """
    if not docs_root.is_dir():
        raise SystemExit(f"{docs_root} not found: install the docs with `apt-get install -y python3.11-doc`")
    docs = _pick(list(docs_root.rglob("*.rst.txt")), docs_root, int(docs_budget_mb * 1e6))
    modules = sorted(stdlib_root.glob("*.py"))
    code = _pick(modules, stdlib_root, int(code_budget_mb * 1e6))
    # The GitHub rows come from modules outside the code subset, the smallest first.
    github = sorted((p for p in modules if p not in code), key=lambda p: (p.stat().st_size, p.name))[:github_rows]

    rows = []
    for path in docs:
        rel = path.relative_to(docs_root)
        folder = rel.parts[0] if len(rel.parts) > 1 else ""
        rows.append(
            {
                "text": path.read_text(encoding="utf-8"),
                "meta": {"redpajama_set_name": SET_BY_FOLDER.get(folder, DEFAULT_SET)},
            }
        )
    # Spread the GitHub rows evenly so both splits get some.
    for k, path in enumerate(github):
        rows.insert(
            (k * len(rows)) // len(github) + k,
            {"text": path.read_text(encoding="utf-8"), "meta": {"redpajama_set_name": "RedPajamaGithub"}},
        )
    splits = {"validation": rows[::10], "train": [r for i, r in enumerate(rows) if i % 10]}

    slim = out_dir / "slimpajama"
    shutil.rmtree(slim, ignore_errors=True)
    for split, n_files in (("train", train_files), ("validation", validation_files)):
        stem = "example_train" if split == "train" else "example_holdout"
        for i in range(n_files):
            _write_jsonl_zst(slim / split / "chunk1" / f"{stem}_{i}.jsonl.zst", splits[split][i::n_files])

    star = out_dir / "starcoder" / "python"
    shutil.rmtree(out_dir / "starcoder", ignore_errors=True)
    star.mkdir(parents=True)
    for i in range(parquet_files):
        part = code[i::parquet_files]
        table = pa.table(
            {
                "max_stars_repo_path": [f"Lib/{p.name}" for p in part],
                "max_stars_repo_name": ["python/cpython"] * len(part),
                "id": [hashlib.sha256(f"Lib/{p.name}".encode()).hexdigest()[:16] for p in part],
                "content": [p.read_text(encoding="utf-8") for p in part],
            }
        )
        # Small row groups so readers really stream record batches.
        pq.write_table(
            table, star / f"train-{i:05d}-of-{parquet_files:05d}.parquet", compression="zstd", row_group_size=16
        )

    total = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file() and f.suffix != ".md")
    print(
        f"{len(docs)} doc pages ({len(splits['train'])} train / {len(splits['validation'])} validation rows incl. "
        f"{len(github)} RedPajamaGithub), {len(code)} stdlib modules; {total / 1e6:.2f} MB in {out_dir}"
    )


if __name__ == "__main__":
    CLI(build_sample_corpus, as_positional=False)
