"""Reading checkpoint files from others without running their code.

Four kinds of data in a checkpoint are pickles: torch.distributed.checkpoint's `.metadata`, DCP's byte
items inside the `.distcp` files (torch pickles every non-tensor value of a state it saves, and its own
loader unpickles them with `weights_only=False`), the per-rank random states (`rng/rank_{r}.pt`) and
`.pth`/`.bin` weight files. A pickle can name any callable and have it called on load, so none of them is
read with plain `pickle.load`:

- `.metadata` goes through `MetadataUnpickler`, which resolves only the classes DCP's metadata is made
  of (`SafeFileSystemReader` is torch's reader with that one method replaced);
- DCP loads go through `load_dcp`: that reader, and `RestrictedLoadPlanner`, which refuses an item the
  caller holds as a tensor but the metadata declares as bytes (torch would unpickle it in the tensor's
  place) and unpickles the byte items it does read with `weights_only=True`. Our own training checkpoints
  hold no byte items (their non-tensor values are JSON, lit_gpt/training/checkpointing.py);
- torch files go through `torch.load(..., weights_only=True)` (`load_torch_file`), also for the old
  non-zip format that cannot be memory-mapped; either way a refusal names the file.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import DefaultLoadPlanner, FileSystemReader
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.planner import LoadItemType, LoadPlan, ReadItem

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


class RestrictedLoadPlanner(DefaultLoadPlanner):
    """torch's DCP load planner for files from others: an item the state to load holds as a tensor must be
    stored as one, and a byte item is unpickled with `weights_only=True` (plain data only). `source` (the
    checkpoint's `.metadata`) names the file in a refusal."""

    def __init__(self, source: PathLike) -> None:
        super().__init__()
        self.source = source

    def create_local_plan(self) -> LoadPlan:
        plan = super().create_local_plan()
        for item in plan.items:
            fqn = item.dest_index.fqn
            if item.type == LoadItemType.BYTE_IO and isinstance(self.state_dict.get(fqn), torch.Tensor):
                raise UnsafeCheckpointError(
                    f"{self.source}: {fqn!r} is a tensor, but this metadata declares it as pickled bytes; "
                    f"refusing to load it (a crafted or foreign file)"
                )
        return plan

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        fqn = read_item.dest_index.fqn
        try:
            obj = torch.load(value, weights_only=True)
        except pickle.UnpicklingError as e:
            raise UnsafeCheckpointError(
                f"{self.source}: the item {fqn!r} holds more than plain data, so it is not loaded "
                f"(torch.load weights_only=True refused it: {str(e).splitlines()[0]})"
            ) from e
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[fqn], obj)
        else:
            self.state_dict[fqn] = obj


@contextlib.contextmanager
def single_process_dcp():
    """Around our own DCP saves and loads: without the warning DCP gives for each one made without a process
    group, that it assumes a single process. That is what our `no_dist` asks for; the user can do nothing
    with it."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="torch.distributed is disabled, unavailable or uninitialized, assuming the intent is to "
            "(save|load) in a single process",
            category=UserWarning,
        )
        yield


def load_dcp(state: dict[str, Any], folder: PathLike, one_process: bool = False) -> None:
    """`dcp.load` of `state` (in place) from a checkpoint folder through `SafeFileSystemReader` and
    `RestrictedLoadPlanner`, on every rank together when torch.distributed runs (`one_process`: by this
    process alone). A refusal comes out as itself, not wrapped in torch's CheckpointException (which a
    command would print as a traceback)."""
    folder = Path(folder)
    read_dcp_metadata(folder / ".metadata")  # refuses a crafted file with a clear error before DCP wraps it
    try:
        with single_process_dcp():
            dcp.load(
                state,
                storage_reader=SafeFileSystemReader(folder),
                planner=RestrictedLoadPlanner(folder / ".metadata"),
                no_dist=one_process or not (dist.is_available() and dist.is_initialized()),
            )
    except CheckpointException as e:
        for error, _ in e.failures.values():
            if isinstance(error, UnsafeCheckpointError):
                raise error from None
        raise


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
