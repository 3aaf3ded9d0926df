"""How the training entry points end: their exit codes, and user errors as one line instead of a traceback.

Exit codes (PRETRAIN.md, "Exit codes"):
    0    finished: trained to max_steps
    75   stopped by SIGTERM/SIGINT after saving a checkpoint; run again with --resume auto to continue
    2    a user error (bad option, missing or damaged file); the line printed says what and where
    1    the disk ran full while saving ("no space left on PATH"; the earlier checkpoints are kept), or a crash
    130  interrupted by a second Ctrl-C without saving
A crash prints its traceback.

Kept free of heavy imports: `--help` of an entry point must not wait for torch. The command layer
(lit_gpt.cli) re-exports all of it.
"""

from __future__ import annotations

import errno
import os
import pickle
import sys
from collections.abc import Callable
from typing import Any, NoReturn

FINISHED = 0
USER_ERROR = 2
STOPPED_AND_SAVED = 75  # EX_TEMPFAIL: "try again later", what a requeueing scheduler should do
INTERRUPTED = 130

# Errors the library raises for bad input, with a message that names the file or option. Set
# LIT_GPT_TRACEBACK=1 to see their traceback anyway.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, pickle.UnpicklingError)


def _rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def _error_line(e: BaseException) -> str:
    """`error: ...`, with the rank when several processes run: a user error met by one rank alone (its own
    shard, its own device) must still be seen, so every rank prints its own."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return f"error (rank {_rank()}): {e}" if world > 1 else f"error: {e}"


def run_command(job: Callable[[], Any]) -> Any:
    """Run a command-line job (evaluation, conversion): a user error prints one line and exits 2."""
    try:
        return job()
    except USER_ERRORS as e:
        if os.environ.get("LIT_GPT_TRACEBACK"):
            raise
        print(_error_line(e), file=sys.stderr)
        sys.exit(USER_ERROR)


def run_training(job: Callable[[], dict | None]) -> NoReturn:
    """Run a training job (pretrain, finetune) and exit with the code that says how it ended."""
    try:
        state = job()
    except KeyboardInterrupt:
        print(
            "interrupted without saving (second Ctrl-C); the newest checkpoint is the one printed last", file=sys.stderr
        )
        sys.exit(INTERRUPTED)
    except USER_ERRORS as e:
        if os.environ.get("LIT_GPT_TRACEBACK"):
            raise
        print(_error_line(e), file=sys.stderr)
        sys.exit(USER_ERROR)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT) or os.environ.get("LIT_GPT_TRACEBACK"):
            raise
        print(_error_line(e), file=sys.stderr)
        sys.exit(1)
    stopped_by: Any = (state or {}).get("stopped_by")
    if stopped_by:
        if _rank() == 0:
            print(
                f"stopped by {stopped_by} after saving; exit code {STOPPED_AND_SAVED}. Run the same command "
                f"again (--resume auto) to continue.",
                file=sys.stderr,
            )
        sys.exit(STOPPED_AND_SAVED)
    sys.exit(FINISHED)
