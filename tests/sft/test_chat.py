"""Chat inference: streaming that stops at the template's stop strings, a history that gives way to
the context, and the two command-line programs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lit_gpt.checkpoint import load_lit_checkpoint, model_from_state_dict
from lit_gpt.sft.inference import ChatSession, StopStream
from lit_gpt.sft.templates import TEMPLATES, SegmentEncoder
from lit_gpt.tokenizer import Tokenizer

from .chat_helpers import ROOT


def test_stop_stream_holds_back_a_possible_stop_string_and_ends_at_one(chat_tokenizer):
    tokenizer = Tokenizer(chat_tokenizer)
    encoder = SegmentEncoder(tokenizer)
    ids = encoder._no_prefix.encode("4 * 3 = 12.<|im_end|>\n<|im_start|>user")
    stream = StopStream(tokenizer, ["<|im_end|>"])
    pieces = []
    for token in ids:
        pieces.append(stream.add(token))
        if stream.stopped:
            break
    assert "".join(pieces) + stream.finish() == "4 * 3 = 12." and stream.text == "4 * 3 = 12."
    assert not any("<" in p for p in pieces)
    stream = StopStream(tokenizer, ["<|im_end|>"])  # a "<" that turns out to be text is released
    out = "".join(stream.add(t) for t in encoder._no_prefix.encode("a <b> c")) + stream.finish()
    assert out == "a <b> c" and not stream.stopped


@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint):
    state_dict, config = load_lit_checkpoint(tiny_checkpoint)
    return model_from_state_dict(state_dict, config).eval()


def test_session_keeps_history_and_drops_the_oldest_turns_when_full(tiny_model, chat_tokenizer):
    tokenizer = Tokenizer(chat_tokenizer)
    tiny_model.max_seq_length = 256  # ChatML's markers take about 12 tokens each with this tokenizer
    session = ChatSession(
        tiny_model, tokenizer, TEMPLATES["chatml"], system_prompt="Be brief.", max_new_tokens=6, temperature=0
    )
    answer = "".join(session.reply("What is 2 + 2?"))
    assert session.history == [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": answer.strip()},
    ]
    session.history = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "2 + 2 = 4."}]
    ids, budget = session.prompt("And times 3?")
    expected, _ = SegmentEncoder(tokenizer).encode_conversation(
        TEMPLATES["chatml"],
        [{"role": "system", "content": "Be brief."}] + session.history + [{"role": "user", "content": "And times 3?"}],
        add_generation_prompt=True,
    )
    assert ids == expected and budget == 6 and session.dropped_turns == 0
    session.history = 4 * [
        {"role": "user", "content": "How do I read a text file line by line?"},
        {"role": "assistant", "content": "Loop over the file object in a with block."},
    ]
    ids, budget = session.prompt("last one")  # 4 turns of about 70 tokens do not fit a context of 256
    assert session.dropped_turns > 0 and len(ids) + budget <= 256 and budget == 6
    assert tokenizer.decode(ids).startswith("<|im_start|>system\nBe brief.")
    session.reset()
    assert session.history == [] and session.dropped_turns == 0


def test_command_line_programs(tmp_path, tiny_checkpoint):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    common = ["--checkpoint", str(tiny_checkpoint), "--template", "zephyr", "--max_new_tokens", "5", "--device", "cpu"]
    one = subprocess.run(
        [sys.executable, str(ROOT / "sft" / "simple_inference.py"), "--prompt", "What is 2 + 2?", *common],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    assert "template zephyr" in one.stderr
    chat = subprocess.run(
        [sys.executable, str(ROOT / "sft" / "chat.py"), "--system", "Be brief.", *common],
        input="hello\n/reset\nWhat is 2 + 2?\n/exit\nnot read\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert chat.returncode == 0, chat.stderr[-3000:]
    assert chat.stderr.count("(new conversation)") == 1 and len(chat.stdout.splitlines()) >= 2
    no_template = subprocess.run(
        [
            sys.executable,
            str(ROOT / "sft" / "simple_inference.py"),
            "--prompt",
            "hi",
            "--checkpoint",
            str(tiny_checkpoint),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert no_template.returncode != 0 and "pass --template" in no_template.stderr
