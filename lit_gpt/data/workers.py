"""Worker processes that never outlive their parent and never hold up its exit: the DataLoader workers of a
training run and the pools of the preparation scripts."""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util  # registers multiprocessing's own exit handler before ours (handlers run last-first)
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

PARENT_POLL_SECONDS = 0.5
T = TypeVar("T")


def exit_with_parent(parent_pid: int) -> None:
    """End this process as soon as `parent_pid` is no longer its parent, however the parent ended (SIGKILL
    included, which leaves the parent no chance to stop anything). A daemon thread polls `getppid()`,
    which changes when the parent dies; it calls `os._exit`, which ends the process even while its main
    thread is blocked in a read. (`prctl(PR_SET_PDEATHSIG)` would fire when the *thread* that started
    the worker ends, which for a loader iterated from a short-lived thread is far too early.)"""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def start_loader_worker(parent_pid: int, worker_id: int) -> None:
    """`worker_init_fn` (bound to the training process's pid): ignore SIGTERM and SIGINT, and exit with
    the parent. Schedulers (SLURM, torchrun) and Ctrl-C signal the whole process group; a worker that died
    of it would fail the main process's next batch before it could save. The main process handles the
    signal, saves, and shuts its workers down; should it die instead, the workers follow it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(parent_pid)


_LIVE_LOADER_WORKERS: set[multiprocessing.process.BaseProcess] = set()


@contextmanager
def killed_at_exit(start: Callable[[], T]) -> Iterator[T]:
    """Call `start()` (which starts worker processes, e.g. `iter(dataloader)`) and yield its result; the
    processes it started are killed if the interpreter exits while this block is still open.

    At exit multiprocessing sends SIGTERM to its daemonic children and then waits for each. Loader
    workers ignore SIGTERM (see `start_loader_worker`), so a script that exits while a loader iterator
    is still alive (a generator not run to its end) would wait for them forever. They only read shards:
    killing them loses nothing."""
    before = set(multiprocessing.active_children())
    result = start()
    started = [p for p in multiprocessing.active_children() if p not in before]
    _LIVE_LOADER_WORKERS.update(started)
    try:
        yield result
    finally:
        _LIVE_LOADER_WORKERS.difference_update(started)


@atexit.register
def _kill_live_loader_workers() -> None:
    for process in list(_LIVE_LOADER_WORKERS):
        if process.is_alive():
            process.kill()
    for process in list(_LIVE_LOADER_WORKERS):
        process.join(timeout=5)
