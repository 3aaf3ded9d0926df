"""Helpers of the fine-tuning tests: the chat sample, the tiny model's config and the options of a short
CPU run (the tokenizer and checkpoint fixtures are in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from lit_gpt.cli.shipped import demo_data
from lit_gpt.config import Config
from lit_gpt.sft.finetune import FinetuneArgs

ROOT = Path(__file__).resolve().parents[2]
CHAT_SAMPLE = demo_data("chat_sample")


def tiny_chat_config(**overrides) -> Config:
    fields = dict(
        name="tiny_chat",
        n_layer=2,
        n_head=4,
        n_query_groups=2,
        n_embd=64,
        intermediate_size=176,
        vocab_size=512,
        block_size=128,
        kernels="torch",
    )
    return Config(**{**fields, **overrides})


def run_args(checkpoint: Path, out_dir: Path, **overrides) -> FinetuneArgs:
    """A short single-process CPU run on data/chat_sample."""
    args = dict(
        checkpoint=checkpoint,
        out_dir=out_dir,
        data=CHAT_SAMPLE,
        accelerator="cpu",
        max_steps=12,
        global_batch_size=8,
        micro_batch_size=4,
        lr=3e-3,
        min_lr=3e-4,
        warmup_steps=2,
        log_interval=1,
        eval_interval=6,
        save_interval=0,
        tensorboard=False,
        val_fraction=0.05,
    )
    return FinetuneArgs(**{**args, **overrides})
