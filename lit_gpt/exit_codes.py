"""How the training entry points end: their exit codes, and user errors as one line instead of a traceback.

Exit codes (PRETRAIN.md, "Exit codes"):
    0    finished: trained to max_steps
    75   stopped by SIGTERM/SIGINT after saving a checkpoint; run again with --resume auto to continue
    2    a user error (bad option, missing or damaged file); the line printed says what and where
    1    the disk ran full while saving ("no space left on PATH"; the earlier checkpoints are kept), or a crash
    130  interrupted by a second Ctrl-C without saving
A crash prints its traceback.

Every console command parses its options with `CommandParser` (a missing, unknown or mistyped option, a
bad `--config`: one line, exit 2) and runs through `run_command` or `run_training`.

Kept free of heavy imports: `--help` of an entry point must not wait for torch. The command layer
(lit_gpt.cli) re-exports all of it.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from jsonargparse import ArgumentParser

FINISHED = 0
USER_ERROR = 2
STOPPED_AND_SAVED = 75  # EX_TEMPFAIL: "try again later", what a requeueing scheduler should do
INTERRUPTED = 130

# Errors the library raises for bad input, with a message that names the file or option. Set
# LIT_GPT_TRACEBACK=1 to see their traceback anyway.
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    pickle.UnpicklingError,
)


def _rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def _error_line(e: BaseException) -> str:
    """`error: ...`, with the rank when several processes run: a user error met by one rank alone (its own
    shard, its own device) must still be seen, so every rank prints its own."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return f"error (rank {_rank()}): {e}" if world > 1 else f"error: {e}"


class CommandParser(ArgumentParser):
    """jsonargparse's parser, but a parsing error (a missing, unknown or mistyped option, an unreadable
    `--config`) is one line naming the option, then exit 2, instead of the usage text."""

    def parse_args(self, args=None, *rest, **kwargs):
        self._given = list(sys.argv[1:] if args is None else args)  # named by a `--config` error
        return super().parse_args(args, *rest, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # jsonargparse parsing on its own behalf: it catches the error
            super().error(message, ex)
        print(
            f"error: {_one_line_parse_error(message, getattr(self, '_given', []))} (--help lists the options)",
            file=sys.stderr,
        )
        sys.exit(USER_ERROR)


def _one_line_parse_error(message: str, given: list[str]) -> str:
    """jsonargparse's message in one line, with options spelled as they are typed (`--name`)."""
    line = "; ".join(part.strip() for part in str(message).splitlines() if part.strip())
    required = re.fullmatch(r"the following arguments are required: (.*)", line)
    if required:
        return "missing " + ", ".join(f"--{name.strip()}" for name in required.group(1).split(","))
    key, value = re.match(r'Parser key "([^"]+)"', line), re.search(r"(?:Given|Got) value: (.*)", str(message))
    if key and value:  # a value of the wrong type: jsonargparse names each type it tried
        types = [
            re.sub(r"typing\.Literal\[(.*)\]", r"one of \1", re.sub(r"<class '(\w+)'>", r"\1", t)).strip()
            for t in re.findall(r"Expected an? (.+?)(?:\. Got value:|$)", str(message), re.M)
        ]
        expected = " or ".join(dict.fromkeys("null" if t == "NoneType" else t for t in types)) or "another value"
        return f"--{key.group(1)} {value.group(1).strip()}: expected {expected}"
    line = re.sub(r'Parser key "([^"]+)":;?', r"--\1:", line)
    if line.startswith("Problems parsing config"):
        configs = [v for k, v in zip(given, given[1:]) if k == "--config"]
        configs += [a.split("=", 1)[1] for a in given if a.startswith("--config=")]
        line = f"--config {', '.join(configs)}: not a YAML file of options ({line})" if configs else line
    return line


def run_cli(function: Callable, argv: list[str] | None = None) -> Any:
    """A console command: `function`'s parameters as options (`--name value`, a YAML `--config`), parsed from
    `argv` (default: the command line), then `function` called with them under `run_command`."""
    from jsonargparse import CLI

    return run_command(lambda: CLI(function, as_positional=False, args=argv, parser_class=CommandParser))


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
