"""Muon on a GPU: float8 linears and compiled blocks (the CUDA default) step, save on SIGTERM, resume and
finish; the orthogonalisation of a tiny_LLaMA_1b-sized matrix in bf16 on the GPU against float64. Run with
``pytest -m cuda tests/test_muon_cuda.py``."""

from __future__ import annotations

import math

import pytest
import torch
from training.pretrain_helpers import losses, run

from lit_gpt.cli import STOPPED_AND_SAVED
from lit_gpt.training.checkpointing import list_checkpoints
from lit_gpt.training.metrics import read_metrics

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9),
        reason="needs a CUDA GPU with float8 tensor cores",
    ),
]


def test_orthogonalize_on_the_gpu_matches_the_cpu():
    from lit_gpt.training.muon import orthogonalize

    g = torch.randn(5632, 2048, dtype=torch.float64)
    on_gpu, on_cpu = orthogonalize(g.cuda()).double().cpu(), orthogonalize(g).double()
    # the same bf16 iteration with another summation order: both within bf16's reach of each other
    assert ((on_gpu - on_cpu).norm() / on_cpu.norm()).item() < 0.03
    s = torch.linalg.svdvals(on_gpu)
    assert s.max() < 1.25 and s.median() > 0.6


def test_muon_with_float8_and_compile_steps_saves_and_resumes(
    tmp_path, prepared_sample, sample_tokenizer, model_config
):
    pytest.importorskip("torchao")  # the float8 extra: `pip install 'lit_gpt[float8]'`
    common = (prepared_sample, sample_tokenizer, model_config)
    args = ("--accelerator", "cuda", "--num_workers", "0", "--optimizer", "muon", "--float8", "tensorwise")
    args += ("--float8_min_features", "0")
    out = tmp_path / "run"
    run(out, *common, *args, simulate=("--sigterm_after_batches", 18), expect_rc=STOPPED_AND_SAVED)
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [5]
    proc = run(out, *common, *args)
    assert "resumed from" in proc.stdout and "at step 5" in proc.stdout
    series = losses(out)
    assert sorted(series) == list(range(1, 13)) and all(math.isfinite(v) for v in series.values())
    assert series[12] < series[1]
    assert all(math.isfinite(v) for _, v in read_metrics(out / "metrics.csv")["grad_norm"])
