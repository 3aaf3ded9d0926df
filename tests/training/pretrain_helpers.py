"""Running pretrain/tinyllama.py for the tests: in subprocesses (through run_pretrain.py, which can simulate
a preemption or a crash), or a short run in the test's own process; on a small model over the prepared
sample corpus."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lit_gpt.training.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "tests" / "training" / "run_pretrain.py"
MAX_STEPS = 12


def pretrain_args(
    out_dir: Path, data: Path, tokenizer: Path, model_config: Path, *extra: str, devices: int = 1
) -> list:
    args = [
        "--data_dir",
        str(data),
        "--tokenizer_dir",
        str(tokenizer),
        "--model_config",
        str(model_config),
        "--out_dir",
        str(out_dir),
        "--accelerator",
        "cpu",
        "--devices",
        str(devices),
        "--global_batch_size",
        "8",
        "--micro_batch_size",
        "2",
        "--max_steps",
        str(MAX_STEPS),
        "--lr",
        "3e-3",
        "--min_lr",
        "3e-4",
        "--warmup_steps",
        "2",
        "--log_interval",
        "1",
        "--eval_interval",
        "6",
        "--eval_batches",
        "2",
        "--val_prefix",
        "train_starcoder",
        "--save_interval",
        "0",
        "--tensorboard",
        "false",
        *extra,
    ]
    return args


# the training processes see the base install: tests/base_install/sitecustomize.py says why
BASE_INSTALL = ROOT / "tests" / "base_install"
ENV = {
    **os.environ,
    "PYTHONUNBUFFERED": "1",
    "PYTHONPATH": os.pathsep.join(filter(None, [str(BASE_INSTALL), str(ROOT), os.environ.get("PYTHONPATH")])),
}


def run(
    out_dir: Path,
    data: Path,
    tokenizer: Path,
    model_config: Path,
    *extra: str,
    devices: int = 1,
    simulate: tuple = (),
    expect_rc: int = 0,
) -> subprocess.CompletedProcess:
    args = pretrain_args(out_dir, data, tokenizer, model_config, *extra, devices=devices)
    # a session of its own: a simulated group-wide SIGTERM reaches the run, not pytest
    proc = subprocess.run(
        [sys.executable, str(LAUNCHER), *map(str, simulate), "--", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,
    )
    assert proc.returncode == expect_rc, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def losses(out_dir: Path) -> dict:
    return dict(read_metrics(out_dir / "metrics.csv")["loss"])


def interrupt_fabric_run(
    out_dir: Path, data: Path, tokenizer: Path, model_config: Path, signum: int, num_workers: int
) -> tuple:
    """`fabric run` of two CPU processes (DDP, `num_workers` loader workers each), sent `signum` once rank
    0 has logged step 2; returns everything it printed and the launcher (finished)."""
    fabric_cli = Path(sys.executable).with_name("fabric")
    args = pretrain_args(
        out_dir,
        data,
        tokenizer,
        model_config,
        "--strategy",
        "ddp",
        "--num_workers",
        str(num_workers),
        "--max_steps",
        "10000",
        "--eval_interval",
        "0",
        devices=2,
    )
    launcher = subprocess.Popen(
        [
            str(fabric_cli),
            "run",
            "--accelerator",
            "cpu",
            "--devices",
            "2",
            str(ROOT / "pretrain" / "tinyllama.py"),
            "--",
            *args,
        ],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen = []
    for line in launcher.stdout:
        seen.append(line)
        if line.startswith("step 2/"):
            launcher.send_signal(signum)
            break
    return "".join(seen) + launcher.communicate(timeout=120)[0], launcher


def short_run(out_dir, data, tokenizer, config_file, **overrides):
    """A pretraining run in this process (one step of 4 sequences unless `overrides` say otherwise)."""
    from lit_gpt.cli.pretrain import pretrain_with_recipe
    from lit_gpt.training.pretrain_args import PretrainArgs

    args = dict(
        out_dir=out_dir,
        data_dir=data,
        tokenizer_dir=tokenizer,
        model_config=config_file,
        accelerator="cpu",
        global_batch_size=4,
        micro_batch_size=2,
        max_steps=1,
        warmup_steps=0,
        eval_interval=0,
        eval_batches=1,
        val_prefix="",
        tensorboard=False,
        num_workers=0,
    )
    return pretrain_with_recipe(PretrainArgs(**{**args, **overrides}))
