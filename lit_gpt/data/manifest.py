"""`{prefix}.manifest.json`: what a prepare run read, skipped and wrote, and with which tokenizer.

Training reads it to refuse data made with another tokenizer or with ids the model cannot embed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json_atomic(path: str | Path, obj) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def manifest_path(data_dir: str | Path, prefix: str) -> Path:
    return Path(data_dir) / f"{prefix}.manifest.json"


def read_manifest(data_dir: str | Path, prefix: str) -> dict:
    path = manifest_path(data_dir, prefix)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no manifest for the {prefix!r} shards; prepare the data with scripts/prepare_*.py "
            "(a run that has not finished writes none)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); the manifest is damaged: prepare the data again") from e
    made = manifest.get("tokenizer") if isinstance(manifest, dict) else None
    if not isinstance(made, dict) or not all(k in made for k in ("sha256", "vocab_size", "backend")):
        raise ValueError(
            f"{path}: no 'tokenizer' entry with sha256, vocab_size and backend; the manifest is damaged "
            "or not one of ours: prepare the data again"
        )
    return manifest


def check_tokenizer(manifest: dict, tokenizer_identity: dict | None, model_vocab_size: int, source: str = "") -> None:
    """Raise ValueError if the data was tokenized by another tokenizer or holds ids the model cannot embed.
    `source` (the manifest's path) is named in the message."""
    made, prefix = manifest["tokenizer"], manifest.get("prefix", "?")
    where = f" ({source})" if source else ""
    if tokenizer_identity is None:
        raise ValueError(
            f"data {prefix!r}{where} was tokenized with a {made['backend']} tokenizer of {made['vocab_size']} "
            f"ids: pass that tokenizer's folder as --tokenizer_dir, so that it is checked and saved"
        )
    if made["sha256"] != tokenizer_identity["sha256"]:
        raise ValueError(
            f"data {prefix!r}{where} was tokenized with another tokenizer ({made['backend']}, vocab "
            f"{made['vocab_size']}, "
            f"sha256 {made['sha256'][:12]}...) than the one configured ({tokenizer_identity['backend']}, vocab "
            f"{tokenizer_identity['vocab_size']}, sha256 {tokenizer_identity['sha256'][:12]}...)"
        )
    if made["vocab_size"] > model_vocab_size:
        raise ValueError(
            f"data {prefix!r}{where} uses a vocabulary of {made['vocab_size']} tokens, larger than the model's "
            f"padded vocabulary of {model_vocab_size}"
        )


def check_source(
    data_dir: str | Path,
    prefix: str,
    tokenizer_identity: dict | None,
    model_vocab_size: int,
    sampled_files: int = 64,
    span: int = 1 << 16,
) -> str | None:
    """Check source `prefix` before training: against its manifest, or, without one (folders made by
    TinyLlama's or lit-gpt's scripts), by sampling token ids from the shards. Raises ValueError on
    data that cannot be used; returns what could not be checked (None when there is a manifest).

    Without a manifest the ids of up to `sampled_files` files (spread over the set; `span` tokens at
    the start, middle and end of each) must lie in the tokenizer's vocabulary (the model's padded
    vocabulary when no tokenizer is given).
    """
    if manifest_path(data_dir, prefix).is_file():
        from lit_gpt.data.integrity import check_shards

        manifest = read_manifest(data_dir, prefix)
        check_tokenizer(manifest, tokenizer_identity, model_vocab_size, source=str(manifest_path(data_dir, prefix)))
        check_shards(data_dir, prefix, manifest)
        return None
    import numpy as np

    from lit_gpt.data.shards import open_shard
    from lit_gpt.data.stream import find_shards

    shards = find_shards(data_dir, prefix)
    limit = min(model_vocab_size, tokenizer_identity["vocab_size"]) if tokenizer_identity else model_vocab_size
    n = len(shards)
    picked = (
        range(n) if n <= sampled_files else sorted({i * (n - 1) // (sampled_files - 1) for i in range(sampled_files)})
    )
    for info in (shards[i] for i in picked):
        tokens = open_shard(info)
        for start in sorted({0, max(len(tokens) // 2 - span // 2, 0), max(len(tokens) - span, 0)}):
            ids = np.asarray(tokens[start : start + span])
            bad = np.flatnonzero((ids < 0) | (ids >= limit)) if len(ids) else ()
            if len(bad):
                raise ValueError(
                    f"{info.path}: token {start + int(bad[0])} is id {int(ids[bad[0]])}, outside the vocabulary of "
                    f"{limit} "
                    "(tokenizer or model); was the data made with another tokenizer?"
                )
    return (
        f"{Path(data_dir) / prefix}_*.bin: no {manifest_path(data_dir, prefix).name}, so the tokenizer the data was "
        "made with, "
        f"its separators (BOS/EOS) and its skipped input cannot be checked; token ids of {len(picked)} of "
        f"{len(shards)} "
        f"files were sampled and lie in the vocabulary of {limit}"
    )
