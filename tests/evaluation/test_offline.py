"""Offline, a task whose data is not on disk stops at once in one line (exit 2) naming the task and the
way to a local task, instead of lm-eval retrying the hub for about a minute."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eval_helpers import TASK

pytest.importorskip("lm_eval")

from lit_gpt.evaluation.offline import check_task_data_offline, hub_datasets  # noqa: E402
from lit_gpt.evaluation.periodic import task_manager  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def offline_env(hf_home: Path) -> dict:
    return {
        **os.environ,
        "HF_HOME": str(hf_home),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO),
    }


def test_a_hub_task_offline_stops_at_once_in_one_line(tmp_path):
    (tmp_path / "ckpt").mkdir()  # a folder, so that the paths pass their check; the model is never loaded
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "eval_harness.py"),
        "--checkpoint",
        str(tmp_path / "ckpt"),
        "--tasks",
        "hellaswag",
        "--device",
        "cpu",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, env=offline_env(tmp_path / "hf"))
    elapsed = time.perf_counter() - start
    assert proc.returncode == 2, proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert "task hellaswag" in line and "Rowan/hellaswag" in line and "--include_path" in line
    assert "Traceback" not in proc.stderr
    # lm-eval's own attempt takes ~50 s of retries; this is lm-eval's task index (~7 s on the 2-core machine)
    assert elapsed < 40, f"took {elapsed:.1f} s"


def test_lit_lm_eval_offline_says_it_in_one_line(tmp_path, monkeypatch, capsys):
    from lit_gpt.evaluation.lm_eval_model import lm_eval_cli

    for name, value in offline_env(tmp_path / "hf").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "lit-lm-eval",
            "--model",
            "lit_gpt",
            "--model_args",
            f"checkpoint={tmp_path / 'ckpt'}",
            "--tasks",
            "hellaswag",
            "--device",
            "cpu",
        ],
    )
    with pytest.raises(SystemExit) as stop:
        lm_eval_cli()
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: task hellaswag") and "--include_path" in err and len(err.splitlines()) == 1


def test_local_and_cached_tasks_pass_the_check(task_dir, tmp_path, monkeypatch):
    manager = task_manager(str(task_dir), (TASK,))
    assert hub_datasets(manager, [TASK]) == []  # dataset_path: json with local files
    check_task_data_offline(manager, [TASK], reachable=False)

    full = task_manager(None, ("hellaswag",))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    with pytest.raises(FileNotFoundError, match="task hellaswag"):
        check_task_data_offline(full, ["hellaswag"], reachable=False)
    check_task_data_offline(full, ["hellaswag"], reachable=True)  # online: lm-eval downloads it
    (tmp_path / "hf" / "hub" / "datasets--Rowan--hellaswag").mkdir(parents=True)  # what load_dataset caches
    check_task_data_offline(full, ["hellaswag"], reachable=False)
