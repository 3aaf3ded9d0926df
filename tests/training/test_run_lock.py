"""One writer per out_dir: a second run is refused, a stale lock of a dead process is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from lit_gpt.training.run_lock import LOCK_NAME, RunLockedError, acquire_run_lock, release_run_lock


def write_lock(out_dir, pid, host=None):
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / LOCK_NAME).write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid, "since": "then"}))


def test_a_second_run_is_refused_while_the_first_lives(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_lock(tmp_path, other.pid)
        with pytest.raises(RunLockedError, match=rf"in use by process {other.pid} on this host"):
            acquire_run_lock(tmp_path)
    finally:
        other.kill()
        other.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_lock(tmp_path, dead.pid)
    with pytest.warns(UserWarning, match=rf"taking over the lock of process {dead.pid}"):
        lock = acquire_run_lock(tmp_path)
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    acquire_run_lock(tmp_path)  # the holder may take it again
    release_run_lock(lock)
    assert not lock.exists()


def test_a_lock_from_another_host_is_refused_with_the_way_out(tmp_path):
    write_lock(tmp_path, 1234, host="node-elsewhere")
    with pytest.raises(RunLockedError, match=r"process 1234 on host node-elsewhere.*delete .*run\.lock"):
        acquire_run_lock(tmp_path)


def test_pretraining_refuses_a_locked_out_dir_before_any_work(tmp_path):
    from lit_gpt.cli.pretrain import pretrain_with_recipe as pretrain
    from lit_gpt.training.pretrain_args import PretrainArgs

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_lock(tmp_path / "out", other.pid)
        with pytest.raises(RunLockedError, match="in use by process"):
            pretrain(PretrainArgs(out_dir=tmp_path / "out", accelerator="cpu", tensorboard=False))
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [LOCK_NAME]  # the demo data not prepared
    finally:
        other.kill()
        other.wait()
