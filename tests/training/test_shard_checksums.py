"""The manifest records each shard's SHA-256 at preparation; scripts/verify_data.py finds and names a
damaged shard whose size is still right (which the size check at the start of a run cannot see)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lit_gpt.data import read_manifest
from lit_gpt.data.integrity import check_shards, verify_shards
from lit_gpt.data.manifest import manifest_path
from lit_gpt.data.shards import file_sha256

ROOT = Path(__file__).resolve().parents[2]


def verify(data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "verify_data.py"), "--data_dir", str(data_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_damaged_shard_of_the_right_size_is_found_and_named(tmp_path, prepared_sample):
    data = tmp_path / "data"
    shutil.copytree(prepared_sample, data)
    manifest = read_manifest(data, "train_slimpajama")
    for entry in manifest["shards"]:
        assert entry["sha256"] == file_sha256(data / entry["file"])  # recorded while writing
    proc = verify(data)
    assert proc.returncode == 0, proc.stderr
    assert "train_slimpajama: " in proc.stdout and "train_starcoder: " in proc.stdout

    victim = data / manifest["shards"][-1]["file"]
    size = victim.stat().st_size
    with open(victim, "r+b") as f:
        f.seek(size // 2)
        byte = f.read(1)
        f.seek(size // 2)
        f.write(bytes([byte[0] ^ 0x5A]))
    assert victim.stat().st_size == size
    check_shards(data, "train_slimpajama", manifest)  # the size check at the start of a run sees nothing
    proc = verify(data)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {victim}: contents differ from the checksum in") and "Traceback" not in proc.stderr


def test_a_manifest_without_checksums_is_size_checked_with_a_warning(tmp_path, prepared_sample):
    data = tmp_path / "data"
    shutil.copytree(prepared_sample, data)
    path = manifest_path(data, "train_starcoder")
    manifest = json.loads(path.read_text())
    for entry in manifest["shards"]:
        del entry["sha256"]
    path.write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="no checksum recorded"):
        assert verify_shards(data, "train_starcoder", read_manifest(data, "train_starcoder")) == 0
    os.remove(data / manifest["shards"][0]["file"])
    with pytest.raises(FileNotFoundError, match="missing"):
        verify_shards(data, "train_starcoder", read_manifest(data, "train_starcoder"))
