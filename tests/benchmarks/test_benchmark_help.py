"""Every benchmark script still starts after the library changed under it: `--help` exits 0 (the GPU
sessions are too short to find a stale import there); a script loaded by a test leaves the import path as
it was."""

from __future__ import annotations

import subprocess
import sys

import pytest
from data_helpers import ROOT, load_benchmark

SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if p.name != "packed_baseline.py")


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_answers_help(script):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT / "benchmarks",
    )
    assert proc.returncode == 0, f"{script} --help exited {proc.returncode}\n{proc.stderr[-2000:]}"


def test_a_loaded_benchmark_leaves_the_import_path_as_it_was():
    load_benchmark("time_to_loss")  # which imports a sibling script
    assert str(ROOT / "benchmarks") not in sys.path
