"""Perplexity on shards is the training loop's validation loss; on text, every token is scored once."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from lightning import Fabric
from model_helpers import random_model, tiny_config

from lit_gpt.checkpoint import save_lit_checkpoint
from lit_gpt.cli.perplexity import perplexity as perplexity_command
from lit_gpt.data.shards import write_shard
from lit_gpt.data.stream import build_val_loader
from lit_gpt.evaluation.perplexity import (
    IGNORE,
    perplexity_on_shards,
    perplexity_on_text,
    read_documents,
    text_windows,
    validate,
)
from lit_gpt.tokenizer import Tokenizer

BLOCK = 16
BLOCKS_PER_FILE = (5, 9)  # 14 samples of BLOCK + 1 tokens, plus a partial tail in each file


@pytest.fixture(scope="module")
def fabric():
    return Fabric(accelerator="cpu", devices=1)


@pytest.fixture(scope="module")
def model():
    return random_model(tiny_config(vocab_size=320), seed=5)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two validation shards of random tokens; returns the folder and the samples in file order."""
    folder = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    samples = []
    for f, n in enumerate(BLOCKS_PER_FILE):
        tokens = rng.integers(0, 320, n * (BLOCK + 1) + 7).astype(np.uint16)
        write_shard(folder / f"val_{f:010d}.bin", tokens)
        samples += [tokens[i * (BLOCK + 1) : (i + 1) * (BLOCK + 1)].astype(np.int64) for i in range(n)]
    return folder, np.stack(samples)


@torch.no_grad()
def mean_loss(model, samples: np.ndarray) -> float:
    """Token-mean cross-entropy of next-token prediction over whole samples, one sample at a time."""
    losses = [
        F.cross_entropy(model(torch.from_numpy(s[None, :-1]))[0].double(), torch.from_numpy(s[1:]), reduction="sum")
        for s in samples
    ]
    return float(sum(losses)) / (len(samples) * (samples.shape[1] - 1))


def test_shards_give_the_training_loops_validation_loss(fabric, model, shards):
    folder, samples = shards
    result = perplexity_on_shards(fabric, model, folder, "val", BLOCK, micro_batch_size=3, num_batches=4)
    loop = validate(fabric, model, build_val_loader(folder, "val", BLOCK, 3, rank=0, world_size=1, num_batches=4))
    assert result["loss"] == loop
    assert result["loss"] == pytest.approx(mean_loss(model, samples[:12]), abs=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(loop))
    assert result["tokens"] == 12 * BLOCK


def test_shards_of_a_run_on_several_ranks(fabric, model, shards):
    """Three ranks with micro batch 2 score 12 of the 14 samples (2 batches each, 5 asked for); one
    process scoring for them takes the same 12, not the 14 it could."""
    folder, samples = shards
    with pytest.warns(UserWarning, match="batches per rank"):
        per_rank = [
            validate(fabric, model, build_val_loader(folder, "val", BLOCK, 2, r, 3, num_batches=5)) for r in range(3)
        ]
        result = perplexity_on_shards(
            fabric, model, folder, "val", BLOCK, micro_batch_size=2, num_batches=5, world_size=3
        )
    assert result["loss"] == pytest.approx(sum(per_rank) / 3, abs=1e-6)  # every rank scores as many tokens
    assert result["loss"] == pytest.approx(mean_loss(model, samples[:12]), abs=1e-5)
    assert result["tokens"] == 12 * BLOCK


@pytest.mark.parametrize("n, block", [(40, 8), (41, 8), (5, 8), (9, 8)])
def test_text_windows_predict_every_token_once_with_full_context(n, block):
    tokens = np.arange(100, 100 + n)
    scored = []
    for inputs, targets in text_windows(tokens, block, micro_batch_size=2):
        assert inputs.shape == targets.shape and inputs.shape[1] == min(block, n - 1)
        keep = targets != IGNORE
        assert torch.equal(inputs[keep] + 1, targets[keep])  # each target follows its input token
        scored += targets[keep].tolist()
    assert scored == list(range(101, 100 + n))


def test_text_loss_is_the_token_mean_over_documents(fabric, model, sp_tokenizer_dir, tmp_path):
    tokenizer = Tokenizer(sp_tokenizer_dir)
    docs = ["the model learns tokens from text and code.", "café naïve!", "ab ka lo mi"]
    tokens = torch.tensor([t for d in docs for t in [tokenizer.bos_id] + tokenizer.encode(d) + [tokenizer.eos_id]])
    assert len(tokens) - 1 <= 64  # one window
    with torch.no_grad():
        expected = float(F.cross_entropy(model(tokens[None, :-1])[0].double(), tokens[1:]))
    whole = perplexity_on_text(fabric, model, tokenizer, docs, block_size=64, micro_batch_size=2)
    assert whole["loss"] == pytest.approx(expected, abs=1e-6) and whole["tokens"] == len(tokens) - 1
    # short windows see less context: a different loss over the same tokens
    windowed = perplexity_on_text(fabric, model, tokenizer, docs, block_size=8, micro_batch_size=2)
    assert windowed["tokens"] == whole["tokens"] and abs(windowed["loss"] - whole["loss"]) > 1e-3


def test_read_documents(tmp_path):
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text(json.dumps({"text": "one"}) + "\n\n" + json.dumps({"text": "two", "meta": 1}) + "\n")
    assert read_documents(jsonl) == ["one", "two"]
    plain = tmp_path / "book.txt"
    plain.write_text("a whole\nbook\n")
    assert read_documents(plain) == ["a whole\nbook\n"]
    jsonl.write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(ValueError, match="docs.jsonl:1"):
        read_documents(jsonl)


def test_script_takes_the_runs_settings(model, shards, sp_tokenizer_dir, tmp_path, capsys):
    """A pretraining checkpoint ({out_dir}/checkpoints/step-N) is scored with its run's validation settings."""
    folder, samples = shards
    checkpoint = tmp_path / "run" / "checkpoints" / "step-000000010"
    save_lit_checkpoint(checkpoint, model.state_dict(), model.config, tokenizer_dir=sp_tokenizer_dir)
    run = {
        "data_dir": str(folder),
        "val_prefix": "val",
        "micro_batch_size": 2,
        "eval_batches": 3,
        "devices": 2,
        "num_nodes": 1,
        "precision": "32-true",
    }
    (tmp_path / "run" / "run_config.yaml").write_text(yaml.safe_dump(run))
    perplexity = perplexity_command
    result = perplexity(checkpoint=checkpoint, block_size=BLOCK, device="cpu")
    assert result["loss"] == pytest.approx(mean_loss(model, samples[:12]), abs=1e-5)  # 2 ranks x 3 batches x 2
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    text = tmp_path / "held_out.jsonl"
    text.write_text(json.dumps({"text": "the model learns"}) + "\n")
    assert (
        perplexity(checkpoint=checkpoint, text=text, device="cpu")["tokens"]
        == len(Tokenizer(sp_tokenizer_dir).encode("the model learns")) + 1
    )
