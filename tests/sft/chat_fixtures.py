"""Fixtures of the fine-tuning tests: a tokenizer trained on the chat sample's words, a tiny
pretrained-looking checkpoint, and the options of a short CPU run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_gpt.checkpoint import save_lit_checkpoint
from lit_gpt.config import Config
from lit_gpt.model import GPT
from lit_gpt.cli.shipped import demo_data
from lit_gpt.sft.data import read_conversations
from lit_gpt.sft.finetune import FinetuneArgs

ROOT = Path(__file__).resolve().parents[2]
CHAT_SAMPLE = demo_data("chat_sample")


@pytest.fixture(scope="session")
def chat_tokenizer(tmp_path_factory) -> Path:
    """A 512-piece SentencePiece BPE tokenizer (unk 0, bos 1, eos 2, byte fallback) trained on the
    message texts of data/chat_sample, without the templates' markers."""
    import sentencepiece

    texts = [m["content"] for c in read_conversations(CHAT_SAMPLE) for m in c]
    folder = tmp_path_factory.mktemp("chat_tokenizer")
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=str(folder / "tokenizer"), vocab_size=512, byte_fallback=True,
        model_type="bpe", character_coverage=1.0, normalization_rule_name="identity", remove_extra_whitespaces=False,
        split_digits=True, minloglevel=2,
    )
    (folder / "tokenizer.vocab").unlink()
    return folder


def tiny_chat_config(**overrides) -> Config:
    fields = dict(name="tiny_chat", n_layer=2, n_head=4, n_query_groups=2, n_embd=64, intermediate_size=176,
                  vocab_size=512, block_size=128, kernels="torch")
    return Config(**{**fields, **overrides})


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, chat_tokenizer) -> Path:
    """A lit checkpoint folder of a freshly initialised tiny model, with the chat tokenizer beside it."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_checkpoint")
    save_lit_checkpoint(folder, GPT(tiny_chat_config()).state_dict(), tiny_chat_config(), tokenizer_dir=chat_tokenizer)
    return folder


def run_args(checkpoint: Path, out_dir: Path, **overrides) -> FinetuneArgs:
    """A short single-process CPU run on data/chat_sample."""
    args = dict(checkpoint=checkpoint, out_dir=out_dir, data=CHAT_SAMPLE, accelerator="cpu", max_steps=12,
                global_batch_size=8, micro_batch_size=4, lr=3e-3, min_lr=3e-4, warmup_steps=2, log_interval=1,
                eval_interval=6, save_interval=0, tensorboard=False, val_fraction=0.05)
    return FinetuneArgs(**{**args, **overrides})
