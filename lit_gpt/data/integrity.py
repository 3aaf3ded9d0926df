"""Checks that the shards a run reads are the ones their manifest describes, and hold ids the model can embed."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from lit_gpt.data.manifest import manifest_path
from lit_gpt.data.shards import HEADER, ShardError, file_sha256


def check_shards(data_dir: str | Path, prefix: str, manifest: dict) -> None:
    """Every shard the manifest lists exists with the recorded size (header + tokens); a shard on disk
    that the manifest does not list is named in a warning. Reads only file sizes."""
    data_dir, source = Path(data_dir), manifest_path(data_dir, prefix)
    listed = manifest.get("shards")
    if not isinstance(listed, list):
        raise ValueError(f"{source}: no 'shards' list; prepare the data again with this version")
    itemsize = np.dtype(manifest.get("format", {}).get("dtype", "uint16")).itemsize
    for entry in listed:
        path = data_dir / entry["file"]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed in {source} but missing; restore it or prepare the data again")
        expected = entry.get("bytes", HEADER.size + entry["tokens"] * itemsize)
        size = path.stat().st_size
        if size != expected:
            raise ShardError(
                f"{path}: {size} bytes, but {source} records {expected}; the shard was changed or cut short"
            )
    names = {entry["file"] for entry in listed}
    extra = sorted(p.name for p in data_dir.glob(f"{prefix}_*.bin") if p.name not in names)
    if extra:
        warnings.warn(
            f"{data_dir}: {len(extra)} shard file(s) of {prefix!r} not listed in {source} (first {extra[0]}); "
            f"they are read too"
        )


def verify_shards(data_dir: str | Path, prefix: str, manifest: dict) -> int:
    """check_shards, then every shard's SHA-256 against the manifest: reads every byte, so only on request
    (scripts/verify_data.py). Raises ShardError naming the first damaged shard; returns the shards verified.
    Shards of a manifest written before checksums were recorded are named in a warning."""
    check_shards(data_dir, prefix, manifest)
    source, unchecked, verified = manifest_path(data_dir, prefix), [], 0
    for entry in manifest["shards"]:
        path = Path(data_dir) / entry["file"]
        if "sha256" not in entry:
            unchecked.append(entry["file"])
            continue
        if file_sha256(path) != entry["sha256"]:
            raise ShardError(
                f"{path}: contents differ from the checksum in {source} (same size); the shard is "
                f"damaged: restore it or prepare the data again"
            )
        verified += 1
    if unchecked:
        warnings.warn(
            f"{source}: no checksum recorded for {len(unchecked)} shard(s) (first {unchecked[0]}; prepared "
            f"by an older version): their sizes were checked, not their contents"
        )
    return verified


def check_ids(block: np.ndarray, vocab_size: int | None, path: Path, index: int) -> None:
    """Raise ShardError naming the file and block when a token id is outside [0, vocab_size)."""
    if vocab_size is not None and len(block) and (block.max() >= vocab_size or block.min() < 0):
        bad = int(block.max()) if block.max() >= vocab_size else int(block.min())
        raise ShardError(
            f"{path}: block {index} holds token id {bad}, outside the model's vocabulary of {vocab_size}; "
            f"the shard was made with another tokenizer or is damaged"
        )
