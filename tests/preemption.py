"""What the test launchers (training/run_pretrain.py, sft/run_finetune.py) share: their command line
and the simulated preemption."""

import os
import signal
from collections.abc import Callable


def split_argv(argv: list[str]) -> tuple[dict[str, int], list[str]]:
    """`[--option N ...] -- <script args>` -> ({"--option": N, ...}, script args)."""
    split = argv.index("--")
    ours = argv[:split]
    return dict(zip(ours[::2], map(int, ours[1::2]))), argv[split + 1 :]


def preempting(iterate: Callable, after: int, rank_of: Callable[[object], int], whole_group: bool = False) -> Callable:
    """`iterate` (a loader's __iter__) that, on rank 0, sends its own process SIGTERM right after handing
    out its `after`-th batch, the way a scheduler preempts a job; the run's real signal handler must
    then save and stop. `whole_group`: SIGTERM to the whole process group instead (DataLoader workers
    included), as SLURM's scancel and torchrun do; start the launcher in a session of its own. Fabric's
    launcher re-runs the launcher's command line for the other ranks, so every rank is patched alike."""

    def preempted(self):
        for n, batch in enumerate(iterate(self), start=1):
            yield batch
            if n == after and rank_of(self) == 0:
                if whole_group:
                    os.killpg(os.getpgid(0), signal.SIGTERM)
                else:
                    os.kill(os.getpid(), signal.SIGTERM)

    return preempted
