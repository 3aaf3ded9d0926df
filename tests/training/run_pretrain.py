"""Launch the pretraining command (lit_gpt/cli/pretrain.py) for the tests, optionally with a simulated preemption or
crash.

    python tests/training/run_pretrain.py [--sigterm_(group_)after_batches K] [--sigkill_on_save N] -- <pretrain args>

`--sigterm_after_batches K`: rank 0 sends itself SIGTERM after handing out its K-th training batch
(tests/preemption.py); `--sigterm_group_after_batches K`: the same to its whole process group. `--sigkill_on_save N`:
the process kills itself with SIGKILL in the middle of
writing its N-th checkpoint (after the shards are written, before the folder is complete).
`--sigkill_on_async_save N`: SIGKILL right after the N-th asynchronous save has started (its shards
still being written by the background thread, or just written, and the folder not complete).
`--sigkill_after_batches_once_saved K`: SIGKILL after handing out the K-th training batch, as soon as no
checkpoint folder is left unfinished (`step-*.tmp`; waits at most 60 s): a kill after the saves completed.
"""

import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from preemption import preempting, split_argv  # noqa: E402

import lit_gpt.training.checkpointing as checkpointing  # noqa: E402
import lit_gpt.training.pretraining as pretraining  # noqa: E402
from lit_gpt.cli.pretrain import main as main_of_script  # noqa: E402


def patch_loader(after: int, whole_group: bool) -> None:
    build = pretraining.build_train_loader

    def build_with_preemption(*args, **kwargs):
        loader = build(*args, **kwargs)
        rank = kwargs.get("rank", 0)
        iterate = preempting(type(loader).__iter__, after, lambda _: rank, whole_group)
        loader.__class__ = type("PreemptedLoader", (type(loader),), {"__iter__": iterate})
        return loader

    pretraining.build_train_loader = build_with_preemption


def main() -> None:
    options, theirs = split_argv(sys.argv[1:])

    for option, whole_group in (("--sigterm_after_batches", False), ("--sigterm_group_after_batches", True)):
        if option in options:
            patch_loader(options[option], whole_group)

    if "--sigkill_on_save" in options:
        nth = options["--sigkill_on_save"]
        real_save = checkpointing.dcp.save
        calls = []

        def save_then_die(*args, **kwargs):
            real_save(*args, **kwargs)
            calls.append(1)
            if len(calls) == nth:
                os.kill(os.getpid(), signal.SIGKILL)

        checkpointing.dcp.save = save_then_die

    if "--sigkill_on_async_save" in options:
        nth = options["--sigkill_on_async_save"]
        real_async_save = checkpointing.dcp.async_save
        started = []

        def async_save_then_die(*args, **kwargs):
            future = real_async_save(*args, **kwargs)
            started.append(1)
            if len(started) == nth:
                os.kill(os.getpid(), signal.SIGKILL)
            return future

        checkpointing.dcp.async_save = async_save_then_die

    if "--sigkill_after_batches_once_saved" in options:
        nth = options["--sigkill_after_batches_once_saved"]
        checkpoints = Path(theirs[theirs.index("--out_dir") + 1]) / "checkpoints"
        build = pretraining.build_train_loader

        def build_with_kill(*args, **kwargs):
            loader = build(*args, **kwargs)
            iterate = type(loader).__iter__

            def killed(self):
                for n, batch in enumerate(iterate(self), start=1):
                    yield batch
                    if n == nth:
                        deadline = time.monotonic() + 60
                        while list(checkpoints.glob("step-*.tmp")) and time.monotonic() < deadline:
                            time.sleep(0.05)
                        os.kill(os.getpid(), signal.SIGKILL)

            loader.__class__ = type("KilledLoader", (type(loader),), {"__iter__": killed})
            return loader

        pretraining.build_train_loader = build_with_kill

    main_of_script(theirs)  # exits with the script's exit code


if __name__ == "__main__":
    main()
