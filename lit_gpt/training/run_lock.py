"""One writer per out_dir: `{out_dir}/run.lock` names the host and process of the run that writes there.

Two runs on one out_dir would save the same step names over each other and interleave metrics.csv, so
a second run is refused. A lock left by a process that no longer exists on this host (a run killed with
SIGKILL, a crashed node) is taken over with a warning; one from another host cannot be checked from here
and is refused with the way to clear it. The process that holds the lock may take it again (a job run
twice in one Python process); it is removed when that process exits.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import time
import warnings
from pathlib import Path

LOCK_NAME = "run.lock"


class RunLockedError(FileExistsError):
    """Another live run holds the out_dir."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _read(lock: Path) -> dict | None:
    try:
        holder = json.loads(lock.read_text())
        return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None
    except (OSError, ValueError):
        return None


def acquire_run_lock(out_dir: Path) -> Path:
    """Take `{out_dir}/run.lock` for this process or raise RunLockedError naming the holder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = out_dir / LOCK_NAME
    host, pid = socket.gethostname(), os.getpid()
    mine = json.dumps({"host": host, "pid": pid, "since": time.strftime("%Y-%m-%d %H:%M:%S")})
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)  # atomic: one of two racing runs wins
        except FileExistsError:
            holder = _read(lock)
            if holder is None:
                raise RunLockedError(f"{lock}: an unreadable run lock; if no run writes to {out_dir}, delete it")
            if holder.get("host") != host:
                raise RunLockedError(
                    f"{out_dir} is in use by process {holder['pid']} on host {holder.get('host')} (since "
                    f"{holder.get('since')}); stop that run or choose another --out_dir. If it is no longer running, "
                    f"delete {lock}"
                )
            if holder["pid"] != pid and _alive(holder["pid"]):
                raise RunLockedError(
                    f"{out_dir} is in use by process {holder['pid']} on this host (since {holder.get('since')}); "
                    f"stop that run or choose another --out_dir"
                )
            if holder["pid"] != pid:
                warnings.warn(f"{lock}: taking over the lock of process {holder['pid']}, which is no longer running")
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(mine + "\n")
        atexit.register(release_run_lock, lock)
        return lock
    raise RunLockedError(f"{lock}: another run took the lock at the same moment")


def release_run_lock(lock: Path) -> None:
    """Remove the lock if this process still holds it."""
    holder = _read(lock)
    if holder is not None and holder["pid"] == os.getpid() and holder.get("host") == socket.gethostname():
        lock.unlink(missing_ok=True)


def hold_run_lock(fabric, out_dir: Path) -> None:
    """Rank 0 takes the out_dir's lock; every rank raises its refusal, so none waits for the others."""
    refusal = None
    if fabric.global_rank == 0:
        try:
            acquire_run_lock(out_dir)
        except RunLockedError as e:
            refusal = str(e)
    if fabric.world_size > 1:
        refusal = fabric.broadcast(refusal, src=0)
    if refusal is not None:
        raise RunLockedError(refusal)
