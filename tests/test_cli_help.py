"""`--help` of every main entry point answers without importing torch (seconds saved on each look),
the help of recipe-driven options names the recipes' values, and no script is named like a package."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CLIS = [
    "pretrain/tinyllama.py",
    "sft/finetune.py",
    "sft/chat.py",
    "scripts/generate.py",
    "scripts/convert_hf_checkpoint.py",
    "scripts/convert_lit_checkpoint.py",
    "scripts/convert_to_gguf.py",
    "scripts/eval_harness.py",
    "scripts/perplexity.py",
    "scripts/prepare_corpus.py",
    "scripts/prepare_slimpajama.py",
    "scripts/prepare_starcoder.py",
    "scripts/serve.py",
    "scripts/verify_data.py",
    "speculative_decoding/generate.py",
    "sft/simple_inference.py",
    "scripts/merge_lora.py",
    "scripts/plot_run.py",
    "scripts/train_tokenizer.py",
]
HEAVY = ("torch", "transformers", "lm_eval", "lightning", "fastapi")

# Runs the script as `python SCRIPT --help` would, then reports which heavy packages got imported.
PROBE = """
import runpy, sys
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
heavy = [m for m in {heavy!r} if m in sys.modules]
print("HEAVY:" + ",".join(heavy))
sys.exit(code)
"""


@pytest.mark.parametrize("script", CLIS)
def test_help_imports_no_torch(script):
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), str(ROOT / script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert "--help" in proc.stdout or "usage:" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY:", f"{script} --help imported {proc.stdout.splitlines()[-1]}"
    # torch alone takes seconds to import; the help itself well under that even on a busy 2-core machine
    assert elapsed < 10, f"{script} --help took {elapsed:.1f} s"


def _option_help(script: str, option: str) -> str:
    """The help text of one option, on one line."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / script), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    start = text.index(f"--{option} ", text.index("options:"))
    end = text.find(" --", start + len(option) + 3)
    return text[start:end]


def test_help_names_the_recipe_values():
    from lit_gpt.cli.shipped import recipe

    tiny, demo = recipe("tinyllama")["warmup_steps"], recipe("demo")["warmup_steps"]
    assert f"TinyLlama recipe: {tiny}; demo: {demo}" in _option_help("pretrain/tinyllama.py", "warmup_steps")
    tiny, demo = recipe("sft_tinyllama")["lr"], recipe("sft_demo")["lr"]
    assert f"TinyLlama chat recipe: {tiny}; demo: {demo}" in _option_help("sft/finetune.py", "lr")


def test_gguf_help_offers_every_file_type():
    pytest.importorskip("gguf")
    from lit_gpt.gguf_quants import FILE_TYPES

    assert f"{{{','.join(FILE_TYPES)}}}" in _option_help("scripts/convert_to_gguf.py", "outtype")


def test_demo_recipe_takes_the_tinyllama_mix():
    """The data mix is written once, in the TinyLlama recipe; the demo recipe builds on it."""
    from lit_gpt.cli.shipped import RECIPES_DIR, recipe

    assert (
        recipe("demo")["train_sources"]
        == recipe("tinyllama")["train_sources"]
        == {"train_slimpajama": 0.693584, "train_starcoder": 0.306416}
    )
    assert [p.name for p in RECIPES_DIR.glob("*.yaml") if "0.693584" in p.read_text()] == ["tinyllama.yaml"]


@pytest.mark.parametrize("folder", ["pretrain", "scripts", "sft", "speculative_decoding", "benchmarks"])
def test_no_script_is_named_like_an_installed_package(folder):
    # A script runs with its own folder first on the import path, so a script named like a package is
    # imported in its place: benchmarks/kernels.py was, by transformers (which requires `kernels`), and
    # scripts/evaluate.py would have been by lm-eval (Hugging Face's `evaluate`, for some tasks and metrics).
    scripts = {p.stem for p in (ROOT / folder).glob("*.py")}
    assert scripts, folder
    assert not scripts & set(importlib.metadata.packages_distributions())
