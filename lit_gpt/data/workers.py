"""What every DataLoader worker process of a training run does first."""

from __future__ import annotations

import signal


def ignore_stop_signals(worker_id: int) -> None:
    """`worker_init_fn`: ignore SIGTERM and SIGINT. Schedulers (SLURM, torchrun) and Ctrl-C signal the whole
    process group; a worker that died of it would fail the main process's next batch before it could save.
    The main process handles the signal, saves, and shuts its workers down (they also exit on their own
    when it dies)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
