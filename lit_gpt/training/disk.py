"""Disk space for checkpoints: a warning when a checkpoint will not fit, and a full disk said as such.

torch reports a full disk during a checkpoint write as `RuntimeError: [enforce fail at
inline_container.cc] unexpected pos`, which does not say what happened; `out_of_space` recognises it.
"""

from __future__ import annotations

import errno
import shutil
import warnings
from pathlib import Path

import torch

_FULL = (errno.ENOSPC, errno.EDQUOT)


def estimated_checkpoint_bytes(model: torch.nn.Module) -> int:
    """The weights plus AdamW's two moments, each the size of the weights (global sizes, also under FSDP2)."""
    return 3 * sum(p.numel() * p.element_size() for p in model.parameters())


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def warn_if_short_of_space(path: Path, needed: int, when: str) -> bool:
    """Warn (and return True) when fewer than `needed` bytes are free where `path` is."""
    free = free_bytes(path)
    if free < needed:
        warnings.warn(
            f"{when}: {free / 1e9:.2f} GB free on {path}, a checkpoint takes about {needed / 1e9:.2f} GB; "
            f"free some space or the next save will fail"
        )
        return True
    return False


def out_of_space(exc: BaseException, path: Path, needed: int | None = None) -> bool:
    """Whether `exc` (or an error it was raised from) is the file system running full at `path`."""
    pending = [exc]
    while pending:
        seen = pending.pop()
        if isinstance(seen, OSError) and seen.errno in _FULL:
            return True
        if "No space left on device" in str(seen):
            return True
        pending += [e for e in (seen.__cause__, seen.__context__) if e is not None]
        # torch.distributed.checkpoint gathers each rank's error into CheckpointException.failures
        for failure in (getattr(seen, "failures", None) or {}).values():
            failure = failure[0] if isinstance(failure, tuple) else failure
            if isinstance(failure, BaseException):
                pending.append(failure)
    return needed is not None and free_bytes(path) < needed


class NoSpaceLeft(OSError):
    """A checkpoint write ran out of disk space; the partial folder is removed, the earlier checkpoints kept."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return self.args[1]
