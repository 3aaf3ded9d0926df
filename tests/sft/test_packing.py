"""Packed fine-tuning: whole conversations laid end to end in full rows give each token the same loss as
the conversations alone, the packed loader resumes exactly, and a packed run trains."""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F

from lit_gpt.cli.finetune import finetune_with_recipe as finetune
from lit_gpt.model import GPT
from lit_gpt.sft.data import IGNORE, PackedBatches, collate, collate_packed, pack, read_conversations, tokenize
from lit_gpt.sft.templates import SegmentEncoder, get_template
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.training.metrics import read_metrics

from .chat_helpers import CHAT_SAMPLE, run_args, tiny_chat_config


def examples(tokenizer_dir, max_seq_length=127):
    encoder = SegmentEncoder(Tokenizer(tokenizer_dir))
    return tokenize(read_conversations(CHAT_SAMPLE)[:40], encoder, get_template("zephyr"), max_seq_length)


def test_first_fit_packing_fills_rows_without_splitting():
    lengths = [5, 9, 3, 7, 2, 10, 1]
    rows = pack(lengths, 10)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 10 for row in rows)
    assert rows == [[0, 2, 4], [1, 6], [3], [5]]


def per_token_losses(model, batch):
    x, y = batch["input_ids"][:, :-1], batch["labels"][:, 1:]
    with torch.no_grad():
        logits = model(x)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE, reduction="none").view(y.shape)


def test_packed_losses_equal_the_unpacked_ones(chat_tokenizer):
    tokenizer = Tokenizer(chat_tokenizer)
    data = examples(chat_tokenizer)
    torch.manual_seed(0)
    packed_model = GPT(tiny_chat_config(document_mask=True, bos_id=tokenizer.bos_id)).eval()
    plain_model = GPT(tiny_chat_config()).eval()
    plain_model.load_state_dict(packed_model.state_dict())
    rows = [row for row in pack([len(e) for e in data], 128) if len(row) > 1][:4]  # rows of several conversations
    assert len(rows) == 4
    batch = collate_packed([[data[i] for i in row] for row in rows], 127)
    packed = per_token_losses(packed_model, batch)
    compared = 0
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            alone = per_token_losses(plain_model, collate([data[i]], 127, pad_multiple=1))[0]
            n = len(data[i]) - 1  # targets of this conversation: positions at .. at + n - 1
            torch.testing.assert_close(packed[r, at : at + n], alone[:n], rtol=0, atol=2e-5)
            assert packed[r, at + n] == 0  # the next conversation's BOS (or padding) is no target
            compared += int((alone[:n] > 0).sum())
            at += len(data[i])
    assert compared > 100
    # without the document mask the later conversations see the earlier ones: the losses differ
    leaky = per_token_losses(plain_model, batch)
    assert (leaky - packed).abs().max() > 1e-2


def test_packed_loader_is_dense_and_resumes_exactly(chat_tokenizer):
    data = examples(chat_tokenizer)
    loader = PackedBatches(data, micro_batch_size=2, max_seq_length=127, seed=3)
    first = list(itertools.islice(iter(loader), loader.batches_per_epoch + 3))  # into the second epoch
    real = sum(int((b["input_ids"] != 0).sum()) for b in first[: loader.batches_per_epoch])
    assert real / (loader.batches_per_epoch * 2 * 128) > 0.85  # rows nearly full
    again = PackedBatches(data, micro_batch_size=2, max_seq_length=127, seed=3)
    it = iter(again)
    for _ in range(4):
        next(it)
    state = again.state_dict()
    resumed = PackedBatches(data, micro_batch_size=2, max_seq_length=127, seed=3)
    resumed.load_state_dict(state)
    for expected, got in zip(first[4:], itertools.islice(iter(resumed), len(first) - 4)):
        assert all(torch.equal(expected[k], got[k]) for k in expected)
    # two ranks split each global micro batch of rows
    ranks = [PackedBatches(data, 1, 127, seed=3, rank=r, world_size=2) for r in range(2)]
    batch0 = [next(iter(r)) for r in ranks]
    assert torch.equal(torch.cat([b["input_ids"] for b in batch0]), first[0]["input_ids"])
    assert np.isclose(loader.real_tokens_per_row(), sum(len(e) for e in data) / loader.rows_in_epoch(0))


def test_a_packed_run_trains(tmp_path, tiny_checkpoint):
    finetune(
        run_args(
            tiny_checkpoint,
            tmp_path,
            packed=True,
            max_steps=8,
            global_batch_size=4,
            micro_batch_size=2,
            eval_interval=8,
        )
    )
    series = read_metrics(tmp_path / "metrics.csv")
    losses = [loss for _, loss in series["loss"]]
    assert len(losses) == 8 and sum(losses[-2:]) / 2 < losses[0] - 0.5
