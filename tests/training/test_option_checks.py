"""A bad option fails at once (well under a second), before any data or tokenizer work, with one line."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from lit_gpt.cli import USER_ERROR
from lit_gpt.cli.pretrain import pretrain_with_recipe as pretrain
from lit_gpt.training.pretrain_args import PretrainArgs
from training.pretrain_helpers import ENV, ROOT


@pytest.mark.parametrize(
    "options, message",
    [
        (
            dict(max_steps=10),
            r"warmup_steps \(20\) must be below max_steps \(10\)",
        ),  # the demo recipe warms up 20 steps
        (dict(model_name="tiny_LLaMA_1B"), r"unknown model preset 'tiny_LLaMA_1B'; did you mean 'tiny_LLaMA_1b'"),
        (dict(micro_batch_size=3), r"cannot be split into micro batches of 3"),
        (dict(attention="fa4"), r"attention fa4: it runs on CUDA GPUs only, and this run is on cpu"),
    ],
)
def test_a_bad_option_fails_before_any_work(tmp_path, options, message):
    out = tmp_path / "out"
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        pretrain(PretrainArgs(out_dir=out, accelerator="cpu", tensorboard=False, **options))
    assert time.perf_counter() - start < 1.0
    assert not out.exists()  # no tokenizer trained, no data prepared, nothing written


def test_the_entry_point_says_it_in_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "pretrain" / "tinyllama.py"),
            "--out_dir",
            str(tmp_path / "out"),
            "--model_name",
            "tiny_LLaMA_1B",
            "--accelerator",
            "cpu",
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == USER_ERROR
    assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown model preset 'tiny_LLaMA_1B'")
    assert "Traceback" not in proc.stderr
