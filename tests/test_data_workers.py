"""Worker processes never outlive their parent nor hold up its exit: the training loader's workers (which
ignore SIGTERM) and the pool of lit-prepare-corpus."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from data_helpers import ROOT

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")

LOADER_SCRIPT = """
import os, signal, sys, multiprocessing
from pathlib import Path
from data_helpers import write_block_shards
from lit_gpt.data import build_train_loader

folder = Path(sys.argv[1])
write_block_shards(folder, "train_x", [40, 40], 9)
batches = iter(build_train_loader(folder, {"train_x": 1.0}, block_size=8, micro_batch_size=2, num_workers=2))
next(batches)  # a live iterator: its 2 workers run until the loader is closed or the process ends
print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
if sys.argv[2] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
"""


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (an orphan waits to be reaped by whoever adopted it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_until_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def end(proc: subprocess.Popen, pids: list[int]) -> None:
    """Clean up after a failed check: the process and the workers it left."""
    for pid in [proc.pid, *pids]:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    proc.communicate()


def test_a_script_that_exits_with_a_live_loader_iterator_ends(tmp_path):
    proc = start([sys.executable, "-c", LOADER_SCRIPT, str(tmp_path), "exit"])
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert len(workers) == 2, proc.stderr.read()
    try:
        proc.wait(timeout=10)  # from the last line of the script
    except subprocess.TimeoutExpired:
        end(proc, workers)
        pytest.fail("the script did not exit within 10 s of its last line: it waits for its loader workers")
    assert proc.returncode == 0, proc.stderr.read()
    assert wait_until_gone(workers, 5) == []


def test_loader_workers_die_with_their_sigkilled_parent(tmp_path):
    proc = start([sys.executable, "-c", LOADER_SCRIPT, str(tmp_path), "kill"])
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert len(workers) == 2, proc.stderr.read()
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    left = wait_until_gone(workers, 3)
    end(proc, left)
    assert left == [], "loader workers outlived their SIGKILLed parent"


def test_the_prepare_pool_dies_with_its_sigkilled_parent(tmp_path, sample_tokenizer):
    # Two named pipes nobody writes to: each pool worker blocks reading one, so the pool is surely running.
    inputs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    for fifo in inputs:
        os.mkfifo(fifo)
    command = "from lit_gpt.cli.prepare_corpus import main; main()"
    proc = start(
        [sys.executable, "-c", command, "--inputs", str([str(p) for p in inputs]), "--source", "mine"]
        + ["--tokenizer_path", str(sample_tokenizer), "--destination_path", str(tmp_path / "out")]
        + ["--num_processes", "2"]
    )
    deadline, pool = time.monotonic() + 60, []
    while time.monotonic() < deadline and len(pool) < 3 and proc.poll() is None:  # 2 workers, the resource tracker
        time.sleep(0.1)
        pool = children(proc.pid)
    assert len(pool) >= 3, f"no pool running: {pool}, {proc.poll()}"
    time.sleep(1)  # the workers have started reading
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    left = wait_until_gone(pool, 10)
    end(proc, left)
    assert left == [], "pool workers or their resource tracker outlived the SIGKILLed lit-prepare-corpus"
