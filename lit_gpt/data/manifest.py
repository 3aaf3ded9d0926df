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
        raise ValueError(f"{path}: no 'tokenizer' entry with sha256, vocab_size and backend; the manifest is damaged "
                         "or not one of ours: prepare the data again")
    return manifest


def check_tokenizer(manifest: dict, tokenizer_identity: dict | None, model_vocab_size: int, source: str = "") -> None:
    """Raise ValueError if the data was tokenized by another tokenizer or holds ids the model cannot embed.
    `source` (the manifest's path) is named in the message."""
    made, prefix = manifest["tokenizer"], manifest.get("prefix", "?")
    where = f" ({source})" if source else ""
    if tokenizer_identity is None:
        raise ValueError(f"data {prefix!r}{where} was tokenized with a {made['backend']} tokenizer of {made['vocab_size']} "
                         f"ids: pass that tokenizer's folder as --tokenizer_dir, so that it is checked and saved")
    if made["sha256"] != tokenizer_identity["sha256"]:
        raise ValueError(
            f"data {prefix!r}{where} was tokenized with another tokenizer ({made['backend']}, vocab {made['vocab_size']}, "
            f"sha256 {made['sha256'][:12]}...) than the one configured ({tokenizer_identity['backend']}, vocab "
            f"{tokenizer_identity['vocab_size']}, sha256 {tokenizer_identity['sha256'][:12]}...)"
        )
    if made["vocab_size"] > model_vocab_size:
        raise ValueError(
            f"data {prefix!r}{where} uses a vocabulary of {made['vocab_size']} tokens, larger than the model's padded vocabulary of {model_vocab_size}"
        )
