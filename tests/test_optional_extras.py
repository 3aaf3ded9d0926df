"""`pytest -m cuda` on a GPU machine with the base install alone: every test module collects, and a test of an
optional extra (server, GGUF, lm-eval, float8, transformers...) skips, naming what is missing. Checked by
collecting the suite in a process where those packages cannot be imported."""

from __future__ import annotations

import subprocess
import sys

from data_helpers import ROOT
from training.pretrain_helpers import BASE_INSTALL

# setup.py's extras and test-only packages: none is in requirements.txt
OPTIONAL = ["fastapi", "uvicorn", "openai", "gguf", "lm_eval", "torchao", "transformers", "matplotlib", "accelerate"]
OPTIONAL += ["liger_kernel", "bitsandbytes", "wandb", "llama_cpp", "flash_attn", "quack"]


def test_the_gpu_tests_collect_without_the_optional_extras(tmp_path):
    # not installed, as far as the process can tell: neither the packages nor their distributions' metadata
    # are found (torchmetrics, under lightning, asks for the metadata before importing some of them)
    env_path = f"{BASE_INSTALL}:{ROOT}"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": env_path,
            "HOME": str(tmp_path),
            "LIT_GPT_TESTS_HIDE": ",".join(OPTIONAL),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "error" not in proc.stdout.lower().split("short test summary")[-1]
    assert "could not import 'fastapi'" in proc.stdout  # the server's tests skip and say why
