"""Shared fixtures and helpers for the data-pipeline and tokenizer tests (import the fixtures by name)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lit_gpt.cli.prepare_slimpajama import prepare_slimpajama
from lit_gpt.cli.prepare_starcoder import prepare_starcoder
from lit_gpt.cli.shipped import demo_data
from lit_gpt.data.shards import write_shard
from lit_gpt.data.tokenizer_training import train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = demo_data("sample")


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
    """A small SentencePiece tokenizer trained on the sample corpus."""
    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(
        out_dir=out, slimpajama_dir=SAMPLE / "slimpajama" / "train", starcoder_dir=SAMPLE / "starcoder", vocab_size=1024, max_chars=1_000_000
    )
    return out


@pytest.fixture(scope="session")
def prepared_sample(tmp_path_factory, sample_tokenizer) -> Path:
    """The sample corpus prepared into small shards (SlimPajama train + Starcoder)."""
    out = tmp_path_factory.mktemp("packed")
    prepare_slimpajama(SAMPLE / "slimpajama", sample_tokenizer, out, chunk_size=100_000, num_processes=1)
    prepare_starcoder(SAMPLE / "starcoder", sample_tokenizer, out, chunk_size=100_000, num_processes=1)
    return out


def hard_texts() -> list[str]:
    """Texts where a tokenizer shortcut would show: long whitespace runs (indentation up to 40
    spaces, runs at the start, end and between words), digits, non-Latin scripts in and outside the
    vocabulary (CJK, Hangul, Thai, Arabic, emoji: byte fallback), control characters, "▁" itself."""
    texts = [" " * n for n in range(1, 41)] + ["x" + " " * n + "y" for n in range(1, 41)]
    texts += [f"def f{n}():\n" + " " * n + "return 0\n" + " " * (2 * n) + "# done" for n in range(1, 21)]
    texts += ["1234567890 3.14159 -42 1e10 2024-11-26 0x1F 007", "  12  345   6789    ", "価格は1234円です。 日本語の文章", "한국어 텍스트 똠방각하 힣",
              "ภาษาไทย  สวัสดี", "مرحبا بالعالم", "\U0001f600\U0001f680 emoji  \U0001f9ea", "a\u2581b \u2581\u2581 c", "x\x00y\x7f\r\n\t\x0b",
              "e\u0301 Ｆｕｌｌ ½ ﬁ", "tab\tseparated\t\tvalues", "trailing spaces   ", "   leading", ""]
    return texts


@pytest.fixture(scope="session")
def llama2_shaped_tokenizer(tmp_path_factory) -> Path:
    """A SentencePiece tokenizer of the Llama 2 tokenizer's shape (32,000 pieces, byte fallback at
    ids 3-258, split digits, whitespace-run pieces tied at score -1e9), trained on the sample corpus."""
    import json

    from lit_gpt.data.tokenizer_training import llama2_shaped_model, training_text

    out = tmp_path_factory.mktemp("llama2_shaped")
    texts = training_text(SAMPLE / "slimpajama" / "train", SAMPLE / "starcoder", max_chars=1_000_000, max_piece_chars=2000)
    (out / "tokenizer.model").write_bytes(llama2_shaped_model(texts))
    (out / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    return out
