"""Running several `lit-pretrain` trainings from a benchmark: N at a time, each on the GPU its turn gives it,
each logging into its own folder. Shared by float8_quality.py and time_to_loss.py (not a script itself)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lit_gpt.exit_codes import STOPPED_AND_SAVED

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN = [sys.executable, str(ROOT / "pretrain" / "tinyllama.py")]


def run_trainings(
    commands: dict[str, list[str]],
    out_dir: Path,
    jobs: int = 1,
    gpus: str = "",
    timeout: float = 3600,
    stop_when: Callable[[Path], bool] | None = None,
    finished: Callable[[str, float], None] | None = None,
) -> dict[str, float]:
    """Run the named commands (`lit-pretrain` argument lists, the --out_dir of each `out_dir/name`), `jobs` at a
    time, taking the GPUs of the comma-separated `gpus` in turn (trainings sharing a GPU are compared by their
    losses, not their speed). `stop_when(folder)`, asked every second of a running training, ends it early
    (SIGTERM: the trainer saves and leaves at its next step). `finished(name, seconds)` is told of each run as it
    ends well, so that a job cut off later keeps the record of it. Returns the wall seconds of each; the first
    failure stops the others and raises with the end of its output (the whole of it is in
    `out_dir/name/stdout.txt`)."""
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    pending, running, seconds, stopped = list(enumerate(commands.items())), {}, {}, set()
    devices = [g for g in gpus.split(",") if g]
    try:
        while pending or running:
            while pending and len(running) < jobs:
                index, (name, args) = pending.pop(0)
                out = out_dir / name
                out.mkdir(parents=True, exist_ok=True)
                log = open(out / "stdout.txt", "w")
                gpu = {"CUDA_VISIBLE_DEVICES": devices[index % len(devices)]} if devices else {}
                cmd = [*PRETRAIN, *args, "--out_dir", str(out)]
                proc = subprocess.Popen(cmd, env={**env, **gpu}, stdout=log, stderr=subprocess.STDOUT)
                running[name] = (proc, log, time.time())
            time.sleep(1)
            for name, (proc, log, t0) in list(running.items()):
                if proc.poll() is None and name not in stopped and stop_when and stop_when(out_dir / name):
                    proc.send_signal(signal.SIGTERM)
                    stopped.add(name)
                if proc.poll() is None and time.time() - t0 < timeout:
                    continue
                del running[name]
                if proc.returncode is None:
                    proc.kill()
                    proc.wait()
                log.close()
                if proc.returncode and not (name in stopped and proc.returncode == STOPPED_AND_SAVED):
                    tail = (out_dir / name / "stdout.txt").read_text()[-4000:]
                    raise RuntimeError(f"{name}: exit {proc.returncode}\n{tail}")
                seconds[name] = time.time() - t0
                if finished:
                    finished(name, seconds[name])
    finally:
        for proc, log, _ in running.values():
            proc.kill()
            proc.wait()
            log.close()
    return seconds
