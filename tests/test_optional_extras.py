"""`pytest -m cuda` on a GPU machine with the base install alone: every test module collects, and a test of an
optional extra (server, GGUF, lm-eval, float8, transformers...) skips, naming what is missing. Checked by
collecting the suite in a process where those packages cannot be imported."""

from __future__ import annotations

import subprocess
import sys

from data_helpers import ROOT

# setup.py's extras and test-only packages: none is in requirements.txt
OPTIONAL = ["fastapi", "uvicorn", "openai", "gguf", "lm_eval", "torchao", "transformers", "matplotlib", "accelerate"]
OPTIONAL += ["liger_kernel", "bitsandbytes", "wandb", "llama_cpp", "flash_attn"]

# not installed, as far as the process can tell: the path finder does not find them, and their distributions'
# metadata is not found either (torchmetrics, under lightning, asks for it before importing some of them)
HIDE = f"""
import importlib.machinery
import importlib.metadata

OPTIONAL = {OPTIONAL!r}
_find_spec = importlib.machinery.PathFinder.find_spec
_from_name = importlib.metadata.Distribution.from_name


def find_spec(cls, fullname, path=None, target=None):
    return None if fullname.split(".")[0] in OPTIONAL else _find_spec(fullname, path, target)


def from_name(cls, name):
    if name.replace("-", "_").lower() in OPTIONAL:
        raise importlib.metadata.PackageNotFoundError(name)
    return _from_name(name)


importlib.machinery.PathFinder.find_spec = classmethod(find_spec)
importlib.metadata.Distribution.from_name = classmethod(from_name)
"""


def test_the_gpu_tests_collect_without_the_optional_extras(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(HIDE)
    env_path = f"{tmp_path}:{ROOT}"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": env_path, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "error" not in proc.stdout.lower().split("short test summary")[-1]
    assert "could not import 'fastapi'" in proc.stdout  # the server's tests skip and say why
