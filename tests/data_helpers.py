"""Helpers of the data-pipeline and tokenizer tests (their fixtures are in conftest.py), and the loader of the
benchmark scripts that their tests share."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from lit_gpt.cli.shipped import demo_data
from lit_gpt.data.shards import write_shard

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = demo_data("sample")


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module (bench_<name>). The folder is on sys.path only while the script loads,
    for the sibling modules it imports as a script does: left there, its scripts would stand in for installed
    packages of the same name in every later test."""
    folder = ROOT / "benchmarks"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module


def write_block_shards(
    folder: Path, prefix: str, blocks_per_file: list[int], sample_len: int, base: int = 0, tail: int = 3
) -> None:
    """Shards whose every block is filled with one id (`base + 100 * file + block`), followed by a
    partial tail of `tail` tokens of 65535 that no sample may ever contain."""
    folder.mkdir(parents=True, exist_ok=True)
    for f, n in enumerate(blocks_per_file):
        ids = np.repeat(base + 100 * f + np.arange(n), sample_len)
        write_shard(folder / f"{prefix}_{f:010d}.bin", np.concatenate([ids, np.full(tail, 65535)]).astype(np.uint16))


def block_ids(batch) -> list[int]:
    """The block id of each sample of a batch made of `write_block_shards` files (checks it is uniform)."""
    rows = batch.numpy()
    assert (rows == rows[:, :1]).all(), "a sample mixes blocks"
    return rows[:, 0].tolist()


def hard_texts() -> list[str]:
    """Texts where a tokenizer shortcut would show: long whitespace runs (indentation up to 40
    spaces, runs at the start, end and between words), digits, non-Latin scripts in and outside the
    vocabulary (CJK, Hangul, Thai, Arabic, emoji: byte fallback), control characters, "▁" itself."""
    texts = [" " * n for n in range(1, 41)] + ["x" + " " * n + "y" for n in range(1, 41)]
    texts += [f"def f{n}():\n" + " " * n + "return 0\n" + " " * (2 * n) + "# done" for n in range(1, 21)]
    texts += [
        "1234567890 3.14159 -42 1e10 2024-11-26 0x1F 007",
        "  12  345   6789    ",
        "価格は1234円です。 日本語の文章",
        "한국어 텍스트 똠방각하 힣",
        "ภาษาไทย  สวัสดี",
        "مرحبا بالعالم",
        "\U0001f600\U0001f680 emoji  \U0001f9ea",
        "a\u2581b \u2581\u2581 c",
        "x\x00y\x7f\r\n\t\x0b",
        "e\u0301 Ｆｕｌｌ ½ ﬁ",
        "tab\tseparated\t\tvalues",
        "trailing spaces   ",
        "   leading",
        "",
    ]
    return texts
