"""Crafted and damaged training checkpoints for the tests: what an attacker or a bad disk makes of a folder
that `save_checkpoint` wrote. Each crafted file is consistent with itself (files.json is rewritten to
match: it records damage, it does not authenticate), so only the loader stands between it and its code."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.metadata import BytesStorageMetadata, MetadataIndex, TensorStorageMetadata

from lit_gpt.safe_load import read_dcp_metadata
from lit_gpt.training.checkpointing import write_completeness_record


class CreatesMarker:
    """Unpickling this calls `open(marker, "w")`: the file exists afterwards iff the pickle's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def plant_pickled_value(folder: Path, marker: Path, keep_values_file: bool = False) -> str:
    """Rewrite the DCP files of the checkpoint `folder` the way torch saves a state with non-tensor values:
    the optimizer's param_groups as byte items (pickles), that of the first group's `lr` one that creates
    `marker` when unpickled. `keep_values_file`: leave state_values.json beside it. Returns the planted key."""
    metadata = read_dcp_metadata(folder / ".metadata")
    state = {
        key: torch.empty(md.size, dtype=md.properties.dtype) if isinstance(md, TensorStorageMetadata) else None
        for key, md in metadata.state_dict_metadata.items()
    }
    dcp.load(state, checkpoint_id=folder, no_dist=True)  # files this test itself wrote: trusted here
    values_file = folder / "state_values.json"
    if values_file.is_file():
        for path, groups in json.loads(values_file.read_text())["values"]:
            if path == ["optimizer", "param_groups"]:
                for i, group in enumerate(groups):
                    for name, value in group.items():
                        is_tuple = isinstance(value, dict) and "__tuple__" in value
                        state[f"optimizer.param_groups.{i}.{name}"] = tuple(value["__tuple__"]) if is_tuple else value
        if not keep_values_file:
            values_file.unlink()
    key = "optimizer.param_groups.0.lr"
    state[key] = CreatesMarker(marker)
    for shard in folder.glob("*.distcp"):
        shard.unlink()
    dcp.save(state, checkpoint_id=folder, no_dist=True)
    write_completeness_record(folder)
    return key


def declare_tensor_as_bytes(folder: Path, marker: Path) -> str:
    """Make `.metadata` (of allowed classes only) declare the checkpoint's first model tensor as a byte item
    stored at the end of a `.distcp` file, where a torch file that creates `marker` when unpickled is
    appended. Returns the key."""
    metadata = read_dcp_metadata(folder / ".metadata")
    key = next(
        k
        for k, md in sorted(metadata.state_dict_metadata.items())
        if k.startswith("model.") and isinstance(md, TensorStorageMetadata)
    )
    payload = io.BytesIO()
    torch.save(CreatesMarker(marker), payload)
    shard = sorted(folder.glob("*.distcp"))[0]
    offset = shard.stat().st_size
    with open(shard, "ab") as fh:
        fh.write(payload.getvalue())
    metadata.state_dict_metadata[key] = BytesStorageMetadata()
    for index in [index for index in metadata.storage_data if index.fqn == key]:
        del metadata.storage_data[index]
    metadata.storage_data[MetadataIndex(key)] = _StorageInfo(shard.name, offset, len(payload.getvalue()))
    (folder / ".metadata").write_bytes(pickle.dumps(metadata))
    write_completeness_record(folder)
    return key


def zero_bytes(path: Path, offset: int, length: int) -> None:
    """Overwrite `length` bytes of `path` from `offset` with zeros, in place (the size stays)."""
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(bytes(length))


def tensor_location(folder: Path, key: str) -> tuple[Path, int, int]:
    """(file, offset, length) of the stored tensor `key` of a DCP checkpoint folder."""
    metadata = read_dcp_metadata(folder / ".metadata")
    (info,) = [info for index, info in metadata.storage_data.items() if index.fqn == key]
    return folder / info.relative_path, info.offset, info.length
