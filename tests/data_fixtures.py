"""Shared fixtures and helpers for the data-pipeline and tokenizer tests (import the fixtures by name)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from lit_gpt.data.shards import write_shard

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"


def load_script(name: str):
    """Import `scripts/{name}.py` as a module so tests can call its entry function directly."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_block_shards(folder: Path, prefix: str, blocks_per_file: list[int], sample_len: int, base: int = 0, tail: int = 3) -> None:
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


@pytest.fixture(scope="session")
def sample_tokenizer(tmp_path_factory) -> Path:
    """A small SentencePiece tokenizer trained on the sample corpus by scripts/train_tokenizer.py."""
    out = tmp_path_factory.mktemp("tokenizer")
    load_script("train_tokenizer").train_tokenizer(
        out_dir=out, slimpajama_dir=SAMPLE / "slimpajama" / "train", starcoder_dir=SAMPLE / "starcoder", vocab_size=1024, max_chars=1_000_000
    )
    return out


@pytest.fixture(scope="session")
def prepared_sample(tmp_path_factory, sample_tokenizer) -> Path:
    """The sample corpus prepared into small shards (SlimPajama train + Starcoder)."""
    out = tmp_path_factory.mktemp("packed")
    load_script("prepare_slimpajama").prepare_slimpajama(SAMPLE / "slimpajama", sample_tokenizer, out, chunk_size=100_000, num_processes=1)
    load_script("prepare_starcoder").prepare_starcoder(SAMPLE / "starcoder", sample_tokenizer, out, chunk_size=100_000, num_processes=1)
    return out
