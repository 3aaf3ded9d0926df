"""The demo's knobs: `make demo STEPS=N` reaches the pretraining's --max_steps, through the Makefile and
scripts/demo.sh (the Python interpreter is a stand-in that records how it was called, so no training
runs), and `lit-finetune --method lora` without --checkpoint takes the demo LoRA recipe."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def pretrain_call(tmp_path: Path, *make_vars: str) -> list[str]:
    """The arguments `make demo` passed to pretrain/tinyllama.py, run with a stand-in interpreter."""
    calls = tmp_path / "calls"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    python.chmod(0o755)
    out = tmp_path / "demo"
    (out / "checkpoints" / "step-000000007").mkdir(parents=True)  # what the pretraining would leave
    subprocess.run(
        ["make", "-s", "-C", str(ROOT), "demo", f"PY={python}", f"OUT={out}", *make_vars],
        check=True,
        capture_output=True,
        text=True,
    )
    lines = calls.read_text().splitlines()
    pretrain = [line.split() for line in lines if line.startswith("pretrain/tinyllama.py")]
    assert len(pretrain) == 1, lines
    return pretrain[0]


@needs_make
def test_steps_reach_max_steps(tmp_path):
    args = pretrain_call(tmp_path, "STEPS=7")
    assert args[args.index("--max_steps") + 1] == "7"


@needs_make
def test_no_steps_leaves_the_recipe_max_steps(tmp_path):
    assert "--max_steps" not in pretrain_call(tmp_path)


@pytest.mark.parametrize(("method", "lr"), [("full", 1e-3), ("lora", 1e-2)])
def test_demo_fine_tune_recipe_by_method(method, lr):
    """LoRA on the demo model takes its own recipe: the full fine-tune's lr barely moves the adapters."""
    from lit_gpt.cli.finetune import parse_args, recipe_name
    from lit_gpt.cli.shipped import recipe
    from lit_gpt.sft.finetune import resolve

    args = parse_args(["--method", method])
    resolved = resolve(args, recipe(recipe_name(args)))
    assert resolved.lr == lr
    assert str(resolved.out_dir) == {"full": "out/demo_sft", "lora": "out/demo_lora"}[method]
