"""Reading checkpoint files from others without running their code.

Three kinds of file in a checkpoint are pickles: torch.distributed.checkpoint's `.metadata`, the
per-rank random states (`rng/rank_{r}.pt`) and `.pth`/`.bin` weight files. A pickle can name any
callable and have it called on load, so none of them is read with plain `pickle.load`:

- `.metadata` goes through `MetadataUnpickler`, which resolves only the classes DCP's metadata is made
  of (`SafeFileSystemReader` is torch's reader with that one method replaced; pass it to `dcp.load`);
- torch files go through `torch.load(..., weights_only=True)` (`load_torch_file`), also for the old
  non-zip format that cannot be memory-mapped; either way a refusal names the file.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

PathLike = str | Path


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint file refers to something that is not plain data; nothing of it was run."""


# (module, name) pairs a DCP `.metadata` pickle may refer to: the metadata dataclasses, the
# reader's storage records, the torch types they hold, and plain containers.
_DCP_METADATA_CLASSES = (
    {
        ("torch.distributed.checkpoint.metadata", name)
        for name in (
            "Metadata",
            "StorageMeta",
            "MetadataIndex",
            "TensorStorageMetadata",
            "BytesStorageMetadata",
            "ChunkStorageMetadata",
            "TensorProperties",
            "_MEM_FORMAT_ENCODING",
        )
    }
    | {
        ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
        ("torch", "Size"),
        ("torch.serialization", "_get_layout"),  # maps a layout's name ("torch.strided") to the layout
        ("collections", "OrderedDict"),
        ("pathlib", "PosixPath"),
        ("pathlib", "PurePosixPath"),
        ("pathlib", "WindowsPath"),
        ("pathlib", "PureWindowsPath"),
    }
    | {
        ("builtins", name)
        for name in (
            "set",
            "frozenset",
            "list",
            "dict",
            "tuple",
            "int",
            "float",
            "str",
            "bytes",
            "bool",
            "complex",
            "slice",
        )
    }
)


class MetadataUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the names in `_DCP_METADATA_CLASSES` and torch dtypes."""

    def __init__(self, file, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _DCP_METADATA_CLASSES:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise UnsafeCheckpointError(
            f"{self.source}: refers to {module}.{name}, which is not part of a checkpoint's metadata; "
            f"refusing to load it (a crafted or foreign file)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(
            f"{self.source}: holds a persistent reference, which checkpoint metadata never does"
        )


def read_dcp_metadata(path: PathLike) -> Metadata:
    """The `Metadata` in a DCP `.metadata` file, read with `MetadataUnpickler`."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            metadata = MetadataUnpickler(io.BufferedReader(fh), str(path)).load()
    except UnsafeCheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError, IndexError) as e:
        raise ValueError(f"{path}: not a readable checkpoint metadata file ({type(e).__name__}: {e})") from e
    if not isinstance(metadata, Metadata):
        raise UnsafeCheckpointError(f"{path}: holds a {type(metadata).__name__}, not checkpoint metadata")
    return metadata


class SafeFileSystemReader(FileSystemReader):
    """torch's DCP file-system reader whose metadata comes through `read_dcp_metadata`."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        rank = kwargs.get("rank")
        metadata = read_dcp_metadata(self._get_metadata_path(rank))
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


def load_torch_file(path: PathLike, what: str = "file") -> Any:
    """`torch.load` with `weights_only=True` (tensors and plain containers only), memory-mapped when the
    file is in the zip format; any refusal or damage raises a ValueError that names the file."""
    path = Path(path)
    zipped = zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location="cpu", mmap=zipped, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"{path}: the {what} holds more than tensors and plain data, so it is not loaded "
            f"(torch.load weights_only=True refused it: {str(e).splitlines()[0]})"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ValueError(
            f"{path}: the {what} cannot be read; it is damaged or not a torch file "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from e
