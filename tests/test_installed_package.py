"""The package works installed, without the checkout: `pip install` (not editable) into a folder, then
from another directory every console command and every README script answers `--help` from the
installed copy, and the shipped recipes and demo data are found there."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_SCRIPTS = [
    "pretrain/tinyllama.py",
    "sft/finetune.py",
    "sft/chat.py",
    "sft/simple_inference.py",
    "speculative_decoding/generate.py",
    "scripts/generate.py",
    "scripts/serve.py",
    "scripts/eval_harness.py",
    "scripts/perplexity.py",
    "scripts/merge_lora.py",
    "scripts/convert_to_gguf.py",
    "scripts/plot_run.py",
]


def console_commands() -> list[str]:
    text = (ROOT / "setup.py").read_text()
    return re.findall(r'"(lit-[a-z-]+) = ', text)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    # a copy of the tree without build leftovers, so that pip's in-tree build does not write into the checkout
    files = (
        subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"], check=True, capture_output=True
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (build / name).parent.mkdir(parents=True, exist_ok=True)
            (build / name).write_bytes((ROOT / name).read_bytes())
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(build),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return target


def _env(site: Path) -> dict:
    # the installed copy first; the dependencies from this interpreter's environment
    return {**os.environ, "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}


def test_the_installed_copy_is_imported_with_its_data(installed, tmp_path):
    probe = (
        "import lit_gpt, lit_gpt.cli.shipped as s; print(lit_gpt.__file__); "
        "print(s.demo_data('sample')); print(s.demo_data('chat_sample')); print(s.recipe('demo')['train_sources'])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=_env(installed), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    module, sample, chat, mix = proc.stdout.splitlines()
    assert Path(module).is_relative_to(installed) and not Path(module).is_relative_to(ROOT)
    assert sorted(p.name for p in Path(sample).iterdir()) == ["README.md", "slimpajama", "starcoder"]
    assert len(list(Path(sample).rglob("*.jsonl.zst"))) == 6 and len(list(Path(sample).rglob("*.parquet"))) == 3
    assert sorted(p.name for p in Path(chat).glob("*.json*")) == ["alpaca.json", "chat.jsonl", "guanaco.jsonl"]
    assert "train_starcoder" in mix
    size = sum(p.stat().st_size for p in (installed / "lit_gpt").rglob("*") if p.is_file())
    assert size < 8 * 2**20, f"the installed package is {size / 2**20:.1f} MiB"


def test_every_console_command_and_readme_script_answers_help(installed, tmp_path):
    commands = console_commands()
    assert len(commands) >= 15 and "lit-pretrain" in commands
    runs = [[str(installed / "bin" / c), "--help"] for c in commands if c != "lit-lm-eval"]
    # the scripts of the checkout, run from elsewhere: they import the installed package
    runs += [[sys.executable, str(ROOT / s), "--help"] for s in README_SCRIPTS]

    def run(cmd):
        # the console scripts' shebang is this interpreter; PYTHONPATH puts the installed copy first
        return cmd, subprocess.run(cmd, cwd=tmp_path, env=_env(installed), capture_output=True, text=True, timeout=180)

    with ThreadPoolExecutor(4) as pool:
        for cmd, proc in pool.map(run, runs):
            assert proc.returncode == 0, f"{cmd}: {proc.stderr[-2000:]}"
            assert "usage:" in proc.stdout, cmd
