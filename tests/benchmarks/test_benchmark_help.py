"""Every benchmark script still starts after the library changed under it: `--help` exits 0 (the GPU
sessions are too short to find a stale import there)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from data_helpers import ROOT

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
