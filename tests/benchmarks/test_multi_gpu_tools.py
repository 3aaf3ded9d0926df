"""The multi-GPU benchmark tools, run on CPU: scaling.py with 1 and 2 gloo processes, data_coverage.py
on small shards, parity_1v2.py in its smoke mode (fp32, where 1 and 2 processes agree to ~1e-7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_helpers import load_benchmark, write_block_shards
from training.pretrain_helpers import ENV

TINY = [
    "--device",
    "cpu",
    "--model",
    "micro_LLaMA",
    "--seq_len",
    "32",
    "--micro_batches",
    "2",
    "--steps",
    "2",
    "--warmup",
    "1",
    "--timeout",
    "90",
]


@pytest.fixture
def base_install(monkeypatch):
    """The benchmarks' training processes see the base install (tests/base_install/sitecustomize.py)."""
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])


def test_scaling_runs_every_mode_on_one_and_two_gloo_processes(tmp_path, base_install):
    scaling = load_benchmark("scaling")
    rows = scaling.main([*TINY, "--gpus", "1,2", "--modes", "full", "--json", str(tmp_path / "rows.json")])
    # hybrid with shard groups of 1: a (2, 1) mesh, so the replicate dimension really all-reduces
    rows += scaling.main([*TINY, "--gpus", "2", "--modes", "no_shard,hybrid", "--shard_size", "1"])
    assert [r.get("error") for r in rows] == [None] * 4, rows
    assert [(r["mode"], r["gpus"], r["mesh"]) for r in rows] == [
        ("full", 1, [1]),
        ("full", 2, [2]),
        ("no_shard", 2, [2]),
        ("hybrid", 2, [2, 1]),
    ]
    for r in rows:
        assert r["tokens_per_sec"] > 0 and r["tokens_per_sec_per_gpu"] == pytest.approx(r["tokens_per_sec"] / r["gpus"])
    assert len(json.loads((tmp_path / "rows.json").read_text())) == 2
    lines = scaling.table(rows).splitlines()
    assert lines[1].split()[6] == "1.000" and lines[2].split()[:3] == ["full", "2", "2"]
    assert lines[3].split()[6] == "-"  # no 1-process row of no_shard to compare with


def test_scaling_reports_a_failing_configuration_as_a_row(base_install):
    rows = load_benchmark("scaling").main([*TINY, "--gpus", "2", "--modes", "hybrid", "--shard_size", "3"])
    assert "does not divide" in rows[0]["error"]


@pytest.fixture
def block_shards(tmp_path) -> Path:
    write_block_shards(tmp_path, "a", [5, 3, 7, 4], sample_len=17)
    write_block_shards(tmp_path, "b", [6, 2], sample_len=17, base=1000)
    return tmp_path


def test_data_coverage_logs_every_block_once_per_epoch(block_shards, tmp_path):
    coverage = load_benchmark("data_coverage")
    log = tmp_path / "ids.csv"
    rc = coverage.main(
        [
            "--data_dir",
            str(block_shards),
            "--sources",
            '{"a": 0.6, "b": 0.4}',
            "--ranks",
            "2",
            "--workers",
            "2",
            "--micro_batch",
            "2",
            "--block_size",
            "16",
            "--log",
            str(log),
        ]
    )
    assert rc == 0
    rows = log.read_text().splitlines()[1:]
    first_epoch = [r.split(",") for r in rows if r.split(",")[4] == "a" and r.endswith(",0")]
    assert len({(f[5], f[6]) for f in first_epoch}) == len(first_epoch) == 19  # every block of source a, once
    assert {r.split(",")[1] for r in rows} == {"0", "1"}


def test_data_coverage_catches_two_ranks_reading_the_same_blocks(block_shards, monkeypatch):
    coverage = load_benchmark("data_coverage")
    real = coverage.build_train_loader
    monkeypatch.setattr(coverage, "build_train_loader", lambda *a, **k: real(*a, **{**k, "rank": 0}))
    result = coverage.coverage(block_shards, 2, 0, 2, 16, {"a": 0.6, "b": 0.4}, steps=3)
    assert not result["ok"] and any("more than once" in m for m in result["problems"])


def test_parity_smoke_one_and_two_processes_and_resumes_agree(
    tmp_path, base_install, prepared_sample, sample_tokenizer
):
    png = tmp_path / "parity.png"
    result = load_benchmark("parity_1v2").main(
        [
            "--smoke",
            "--data_dir",
            str(prepared_sample),
            "--tokenizer_dir",
            str(sample_tokenizer),
            "--out_dir",
            str(tmp_path / "runs"),
            "--png",
            str(png),
            # 1->2 left out (CI time): tests/training/test_multinode.py resumes one process's checkpoint on two
            "--runs",
            "1,2,2->1",
        ]
    )
    assert png.stat().st_size > 10_000
    assert set(result["differences"]) == {"2 vs 1", "2->1 vs 2"}
    assert max(result["differences"].values()) < 1e-5, result["differences"]
    assert all(len(c) == 30 for c in result["curves"].values())
    # the curve must have moved, or agreeing would prove nothing
    first, last = result["curves"]["1"][0][1], result["curves"]["1"][-1][1]
    assert last < first - 0.5
