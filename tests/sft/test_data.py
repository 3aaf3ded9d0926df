"""Fine-tuning data: the three formats, bad records named by file and line (or skipped and counted),
over-long examples counted, and the length-bucketed loader: deterministic, sharded, exactly resumable."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from lit_gpt.sft.data import (
    IGNORE,
    ChatBatches,
    DataReport,
    Example,
    collate,
    read_conversations,
    split_chat_batch,
    split_validation,
    tokenize,
    validation_batches,
)
from lit_gpt.sft.templates import TEMPLATES, SegmentEncoder
from lit_gpt.tokenizer import Tokenizer

from .chat_helpers import CHAT_SAMPLE

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def write_jsonl(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_the_sample_reads_in_all_three_formats():
    report = DataReport()
    by_file = {p.name: read_conversations(p) for p in sorted(CHAT_SAMPLE.glob("*.json*"))}
    assert {k: len(v) for k, v in by_file.items()} == {"alpaca.json": 30, "chat.jsonl": 300, "guanaco.jsonl": 30}
    assert len(read_conversations(CHAT_SAMPLE, report=report)) == 360 and report.conversations == 360
    chat = by_file["chat.jsonl"]
    assert 30 < sum(c[0]["role"] == "system" for c in chat) < 150
    assert 30 < sum(len(c) >= 4 for c in chat) < 200
    assert by_file["guanaco.jsonl"][0][0]["content"].startswith("Compute") and all(
        c[-1]["role"] == "assistant" for c in by_file["guanaco.jsonl"]
    )
    assert by_file["alpaca.json"][1][0]["content"].startswith("Explain what this standard library function does.\n\n")


def test_guanaco_and_alpaca_records_become_conversations(tmp_path):
    guanaco = write_jsonl(
        tmp_path / "g.jsonl", [{"text": "Be brief.### Human: a?### Assistant: b.### Human: c?### Assistant: d."}]
    )
    assert read_conversations(guanaco) == [
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "a?"},
            {"role": "assistant", "content": "b."},
            {"role": "user", "content": "c?"},
            {"role": "assistant", "content": "d."},
        ]
    ]
    alpaca = tmp_path / "a.json"
    alpaca.write_text(
        json.dumps(
            [
                {"instruction": "Sum.", "input": "1 2", "output": "3"},
                {"instruction": "Say hi.", "input": "", "output": "hi"},
            ]
        )
    )
    assert read_conversations(alpaca) == [
        [{"role": "user", "content": "Sum.\n\n1 2"}, {"role": "assistant", "content": "3"}],
        [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "hi"}],
    ]


@pytest.mark.parametrize(
    "bad, error, kind",
    [
        ('{"messages": [oops', "not JSON", "not JSON"),
        (
            {"messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "x"}]},
            "unknown role 'bot'",
            "invalid conversation",
        ),
        ({"messages": [{"role": "user", "content": "hi"}]}, "does not end with an assistant", "invalid conversation"),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]},
            "'role' and 'content'",
            "invalid conversation",
        ),
        ({"text": "no turns here"}, "missing field 'messages'", "invalid record"),
    ],
)
def test_a_bad_jsonl_record_is_named_by_file_and_line_or_skipped_and_counted(tmp_path, bad, error, kind):
    path = write_jsonl(tmp_path / "chats.jsonl", [GOOD, "", GOOD, bad, GOOD])
    with pytest.raises(ValueError, match=f"chats.jsonl:4: .*{error}"):
        read_conversations(path)
    report = DataReport()
    assert len(read_conversations(path, skip_bad=True, report=report)) == 3
    assert report.skipped == {kind: 1} and report.skipped_at[0].startswith(f"{path}:4: ")
    assert f"1 {kind}" in report.summary()


def test_bad_records_of_a_json_array_are_named_by_line(tmp_path):
    path = tmp_path / "alpaca.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c"}\n]\n')
    with pytest.raises(ValueError, match=r"alpaca.json:3: missing or non-string field 'output'"):
        read_conversations(path)
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": \n]\n')
    with pytest.raises(ValueError, match=r"alpaca.json:4: not JSON"):
        read_conversations(path, skip_bad=True)  # a broken array cannot be read past
    guanaco = write_jsonl(tmp_path / "g.jsonl", [{"text": "### Human: hi"}, {"text": "nothing"}])
    report = DataReport()
    assert read_conversations(guanaco, "guanaco", skip_bad=True, report=report) == []
    assert report.skipped == {"invalid conversation": 1, "invalid record": 1}


def test_overlong_examples_are_truncated_or_dropped_and_counted(chat_tokenizer):
    encoder, template = SegmentEncoder(Tokenizer(chat_tokenizer)), TEMPLATES["zephyr"]
    short = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    long_answer = [
        {"role": "user", "content": "count"},
        {"role": "assistant", "content": " ".join(map(str, range(60)))},
    ]
    long_question = [{"role": "user", "content": "word " * 80}, {"role": "assistant", "content": "ok"}]
    limit = 40
    report = DataReport()
    examples = tokenize([short, long_answer, long_question], encoder, template, limit, "truncate", report)
    assert (report.truncated, report.dropped) == (1, 1)  # the long question leaves no answer within the limit
    assert [len(e) for e in examples] == [len(encoder.encode_conversation(template, short)[0]), limit + 1]
    assert examples[1].loss[1:].any()
    report = DataReport()
    assert len(tokenize([short, long_answer, long_question], encoder, template, limit, "drop", report)) == 1
    assert (report.truncated, report.dropped) == (0, 2) and "0 truncated and 2 dropped" in report.summary()


def fake_examples(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [Example(np.arange(n) + 1000 * i, rng.random(n) < 0.5) for i, n in enumerate(lengths)]


def test_collate_masks_padding_and_untrained_tokens():
    examples = [
        Example(np.array([5, 6, 7]), np.array([False, True, True])),
        Example(np.array([8, 9]), np.array([False, True])),
    ]
    batch = collate(examples, max_seq_length=16, pad_multiple=4)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0, 0], [8, 9, 0, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7, IGNORE, IGNORE], [IGNORE, 9, IGNORE, IGNORE, IGNORE]]
    x, y = split_chat_batch(batch)
    assert x.tolist() == [[5, 6, 7, 0], [8, 9, 0, 0]] and y.tolist() == [
        [6, 7, IGNORE, IGNORE],
        [9, IGNORE, IGNORE, IGNORE],
    ]


def ids_of(batch):
    return [row[0] // 1000 for row in batch["input_ids"].tolist()]


def test_loader_is_deterministic_sharded_bucketed_and_reshuffled_each_epoch():
    lengths = np.random.default_rng(1).integers(3, 60, size=103).tolist()
    examples = fake_examples(lengths)
    ranks = [ChatBatches(examples, 4, 64, seed=7, rank=r, world_size=2, bucket_batches=4) for r in range(2)]
    assert ranks[0].batches_per_epoch == 12
    streams = [iter(r) for r in ranks]
    epochs = []
    for _ in range(2):
        seen = []
        for _ in range(12):
            parts = [ids_of(next(s)) for s in streams]
            assert not set(parts[0]) & set(parts[1]) and len(parts[0]) == len(parts[1]) == 4
            seen += parts[0] + parts[1]
        assert len(set(seen)) == 96  # an epoch never repeats an example
        epochs.append(seen)
    assert epochs[0] != epochs[1] and ranks[0].state_dict() == {"epoch": 1, "batch": 12, "group": 8}
    again = iter(ChatBatches(examples, 4, 64, seed=7, rank=0, world_size=2, bucket_batches=4))
    assert [ids_of(next(again)) for _ in range(12)] == [
        ids_of(collate([examples[i] for i in indices], 64)) for indices in ranks[0].epoch_plan(0)
    ]

    def padded_positions(loader):
        batches = [collate([examples[i] for i in indices], 64, pad_multiple=1) for indices in loader.epoch_plan(0)]
        return sum(b["input_ids"].numel() for b in batches) - sum(
            len(examples[i]) for i in np.concatenate(loader.epoch_plan(0))
        )

    # sorting within buckets puts similar lengths together: far less padding than unsorted batches
    unsorted = ChatBatches(examples, 4, 64, seed=7, rank=0, world_size=2, bucket_batches=1)
    assert padded_positions(ranks[0]) < 0.5 * padded_positions(unsorted)


def test_loader_resumes_exactly_across_an_epoch_boundary():
    examples = fake_examples(np.random.default_rng(2).integers(3, 40, size=50).tolist())
    reference = iter(ChatBatches(examples, 4, 64, seed=3))
    expected = [next(reference) for _ in range(20)]  # 12 batches an epoch
    loader = ChatBatches(examples, 4, 64, seed=3)
    stream = iter(loader)
    for _ in range(9):
        next(stream)
    resumed = ChatBatches(examples, 4, 64, seed=3)
    resumed.load_state_dict(json.loads(json.dumps(loader.state_dict())))
    rest = iter(resumed)
    for want in expected[9:]:
        got = next(rest)
        assert torch.equal(got["input_ids"], want["input_ids"]) and torch.equal(got["labels"], want["labels"])
    other_size = ChatBatches(examples, 2, 64, seed=3)  # resumed with micro batches of 2: same share of the epoch
    other_size.load_state_dict(loader.state_dict())
    assert other_size.state_dict() == {"epoch": 0, "batch": 18, "group": 2}


def test_validation_split_and_batches():
    conversations = list(range(100))
    train, val = split_validation(conversations, 0.1, seed=0)
    assert len(val) == 10 and sorted(train + val) == conversations and split_validation(conversations, 0.1, 0)[1] == val
    assert split_validation(conversations, 0.0, 0) == (conversations, [])
    examples = fake_examples([5 + i % 17 for i in range(23)])
    per_rank = [validation_batches(examples, 4, 64, rank=r, world_size=3) for r in range(3)]
    assert [len(b) for b in per_rank] == [2, 2, 2]  # 7 examples each: one of the 23 is left out
    ids = [i for batches in per_rank for b in batches for i in ids_of(b)]
    assert len(ids) == len(set(ids)) == 21


def test_a_merge_across_a_turn_boundary_is_counted(chat_tokenizer):
    tokenizer = Tokenizer(chat_tokenizer)
    encoder, sp = SegmentEncoder(tokenizer), tokenizer.processor
    piece = next(p for p in map(sp.id_to_piece, range(sp.vocab_size())) if len(p) == 2 and p.isalpha())
    # a header ending in the first letter of a piece whose second letter opens the answer
    template = dataclasses.replace(TEMPLATES["zephyr"], assistant_header="<|assistant|>\n" + piece[0])
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": piece[1] + " more"}]
    report = DataReport()
    tokenize([conversation], encoder, template, 100, report=report)
    assert report.boundary_merges == 1 and "merges across a turn boundary" in report.summary()
    report = DataReport()
    tokenize([conversation], encoder, TEMPLATES["zephyr"], 100, report=report)
    assert report.boundary_merges == 0 and "boundary" not in report.summary()
