"""Chat templates: exactly the assistant's words and end markers carry loss, and our rendering and
tokenization equal transformers' apply_chat_template with the Jinja template we export."""

from __future__ import annotations

import json
import shutil

import pytest

from lit_gpt.sft.templates import (
    TEMPLATES,
    SegmentEncoder,
    check_conversation,
    hf_tokenizer_config,
    render,
    template_of,
    write_chat_template,
)
from lit_gpt.tokenizer import Tokenizer

SYSTEM = {"role": "system", "content": "You are a patient tutor. Explain things simply."}
TURNS = [
    {"role": "user", "content": "What is 17 + 25?"},
    {"role": "assistant", "content": "17 + 25 = 42."},
    {"role": "user", "content": "And times 3?"},
    {"role": "assistant", "content": "42 * 3 = 126.\nThat is all."},
    {"role": "user", "content": "What does `math.sqrt` do? (café)"},
    {"role": "assistant", "content": " It returns the square root: math.sqrt(16) returns 4.0 ✓"},
]
CONVERSATIONS = {
    "one turn": TURNS[:2],
    "multi-turn": TURNS,
    "system, one turn": [SYSTEM] + TURNS[:2],
    "system, multi-turn": [SYSTEM] + TURNS,
}


def runs(mask):
    """(start, end) of every stretch of True."""
    out, start = [], None
    for i, m in enumerate(list(mask) + [False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i))
            start = None
    return out


@pytest.mark.parametrize("name", TEMPLATES)
@pytest.mark.parametrize("case", CONVERSATIONS)
def test_exactly_the_assistant_tokens_carry_loss(name, case, chat_tokenizer):
    template, messages = TEMPLATES[name], CONVERSATIONS[case]
    encoder = SegmentEncoder(Tokenizer(chat_tokenizer))
    ids, mask = encoder.encode_conversation(template, messages)
    eos = encoder.eos
    expected = [
        template.assistant_body.replace("{content}", m["content"]).replace("{eos}", eos)
        for m in messages
        if m["role"] == "assistant"
    ]
    trained = [encoder.decode(ids[a:b]) for a, b in runs(mask)]
    assert trained == expected
    # the end of every answer is trained: EOS for guanaco and zephyr, <|im_end|> and its newline for ChatML
    assert all(t.endswith(eos if name != "chatml" else "<|im_end|>\n") for t in trained)
    # and the untrained rest is everything else, starting with BOS
    assert ids[0] == encoder.tokenizer.bos_id and not mask[0]
    assert encoder.decode(ids, at_start=True) == "".join(s.text for s in render(template, messages, encoder.bos, eos))
    for a, b in runs([not m for m in mask]):
        text = encoder.decode(ids[a:b], at_start=a == 0)
        assert not any(m["content"] in text for m in messages if m["role"] == "assistant")


@pytest.mark.parametrize("name", TEMPLATES)
def test_rendering_and_ids_equal_transformers_apply_chat_template(name, tmp_path, monkeypatch, chat_tokenizer):
    from jinja2.exceptions import TemplateError
    from transformers import AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    template, tokenizer = TEMPLATES[name], Tokenizer(chat_tokenizer)
    shutil.copy(chat_tokenizer / "tokenizer.model", tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(hf_tokenizer_config(tokenizer, template, 128)))
    theirs = AutoTokenizer.from_pretrained(tmp_path)
    encoder = SegmentEncoder(tokenizer)
    for messages in CONVERSATIONS.values():
        for prompt in (False, True):
            conversation = messages[:-1] if prompt else messages
            segments = render(template, conversation, encoder.bos, encoder.eos, add_generation_prompt=prompt)
            ids, _ = encoder.encode(segments)
            assert theirs.apply_chat_template(conversation, tokenize=False, add_generation_prompt=prompt) == "".join(
                s.text for s in segments
            )
            assert theirs.apply_chat_template(conversation, add_generation_prompt=prompt, return_dict=False) == ids
    with pytest.raises(TemplateError, match="unknown role: bot"):
        theirs.apply_chat_template([{"role": "bot", "content": "hi"}], tokenize=False)
    assert template_of(tmp_path) is template


def test_generation_prompt_is_the_assistant_header(chat_tokenizer):
    encoder = SegmentEncoder(Tokenizer(chat_tokenizer))
    for template in TEMPLATES.values():
        prompt = render(template, TURNS[:3], encoder.bos, encoder.eos, add_generation_prompt=True)
        full = render(template, TURNS[:4], encoder.bos, encoder.eos)
        assert "".join(s.text for s in full).startswith("".join(s.text for s in prompt))
        assert prompt[-1].text.endswith(template.assistant_header) and not prompt[-1].loss


@pytest.mark.parametrize(
    "messages, complete, error",
    [
        ([], True, "non-empty"),
        ([{"role": "bot", "content": "hi"}], True, "unknown role 'bot'"),
        ([{"role": "user", "content": 3}], True, "must be a string"),
        ([{"role": "user", "content": "hi"}], True, "does not end with an assistant"),
        ([{"role": "assistant", "content": "hi"}], True, "expected user"),
        (
            [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}],
            True,
            "system message may only come first",
        ),
        (TURNS[:2], False, "must end with a user message"),
    ],
)
def test_malformed_conversations_are_refused(messages, complete, error):
    with pytest.raises(ValueError, match=error):
        check_conversation(messages, complete)


def test_chat_template_can_be_added_to_an_exported_folder(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>"}))
    write_chat_template(tmp_path, TEMPLATES["chatml"])
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["bos_token"] == "<s>" and template_of(tmp_path) is TEMPLATES["chatml"]
