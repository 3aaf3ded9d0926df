"""Fixtures of the fine-tuning tests: a tokenizer trained on the chat sample's words and a tiny
pretrained-looking checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lit_gpt.checkpoint import save_lit_checkpoint
from lit_gpt.model import GPT
from lit_gpt.sft.data import read_conversations

from .chat_helpers import CHAT_SAMPLE, tiny_chat_config


@pytest.fixture(scope="session")
def chat_tokenizer(tmp_path_factory) -> Path:
    """A 512-piece SentencePiece BPE tokenizer (unk 0, bos 1, eos 2, byte fallback) trained on the
    message texts of data/chat_sample, without the templates' markers."""
    import sentencepiece

    texts = [m["content"] for c in read_conversations(CHAT_SAMPLE) for m in c]
    folder = tmp_path_factory.mktemp("chat_tokenizer")
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=512,
        byte_fallback=True,
        model_type="bpe",
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        split_digits=True,
        minloglevel=2,
    )
    (folder / "tokenizer.vocab").unlink()
    # the special tokens alone, as lit-train-tokenizer writes them: fine-tuning adds the chat template
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, indent=2) + "\n"
    )
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, chat_tokenizer) -> Path:
    """A lit checkpoint folder of a freshly initialised tiny model, with the chat tokenizer beside it."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_checkpoint")
    save_lit_checkpoint(folder, GPT(tiny_chat_config()).state_dict(), tiny_chat_config(), tokenizer_dir=chat_tokenizer)
    return folder
