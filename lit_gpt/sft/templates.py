"""Chat templates: one definition each, rendered two ways from that same definition.

`render` turns a conversation into text segments, each flagged with whether it carries loss (the
assistant's words and the end marker of its turn do; the system prompt, the user's turns and the
turn headers do not). `ChatTemplate.jinja` writes the same template as the Jinja `chat_template` of a
Hugging Face tokenizer_config.json, so `tokenizer.apply_chat_template` produces the same text.

Every conversation starts with the tokenizer's BOS token, as every pretraining document did. The
markers `<|im_start|>`, `<|user|>`, `### Human:` are not pieces of a Llama SentencePiece vocabulary: they
are tokenized as the plain text they are (several pieces each). Only the tokenizer's own special
tokens (`<s>`, `</s>`, `<unk>`) become single ids, wherever their text appears, which is also what
transformers does. `SegmentEncoder` tokenizes the segments the way transformers tokenizes the whole
rendered string (no "▁" prefix after a special token), so the ids agree too, unless a merge of the
tokenizer spans a boundary between a trained and an untrained segment (a header's last character and
the answer's first one, say); a boundary next to a space or a special token is always a token boundary,
and `tokenize` in data.py counts the examples where this happens. ChatML trains on `<|im_end|>\n`, not
on `<|im_end|>` alone, because tokenizers that learned code (the demo's) have a `>\n` piece.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

ROLES = ("system", "user", "assistant")
Message = dict[str, str]


class Segment(NamedTuple):
    text: str
    loss: bool  # whether the tokens of this text are trained on


@dataclass(frozen=True)
class ChatTemplate:
    """A chat format. The strings may contain `{content}` (the message) and `{eos}` (the tokenizer's EOS
    token text). An assistant turn is `assistant_header` (the generation prompt; no loss) +
    `assistant_body` (the answer and its end marker: loss) + `assistant_footer` (no loss)."""

    name: str
    system: str
    user: str
    assistant_header: str
    assistant_body: str
    assistant_footer: str
    stop_strings: tuple[str, ...]  # generation stops at these as well as at the EOS token

    def needs_eos(self) -> bool:
        return any("{eos}" in s for s in (self.system, self.user, self.assistant_body, self.assistant_footer))

    @property
    def jinja(self) -> str:
        """The Jinja chat_template for transformers (rendered there with trim_blocks and lstrip_blocks,
        which change nothing here: every tag trims its own whitespace)."""

        def expr(fmt: str) -> str:
            parts = []
            for piece in re.split(r"(\{content\}|\{eos\})", fmt):
                if piece == "{content}":
                    parts.append("message['content']")
                elif piece == "{eos}":
                    parts.append("eos_token")
                elif piece:
                    parts.append(json.dumps(piece))
            return "{{ " + " + ".join(parts) + " }}"

        assistant = self.assistant_header + self.assistant_body + self.assistant_footer
        return (
            "{%- if bos_token %}{{ bos_token }}{% endif -%}"
            "{%- for message in messages -%}"
            "{%- if message['role'] == 'system' -%}"
            + expr(self.system)
            + "{%- elif message['role'] == 'user' -%}"
            + expr(self.user)
            + "{%- elif message['role'] == 'assistant' -%}"
            + expr(assistant)
            + "{%- else -%}{{ raise_exception('unknown role: ' + message['role']) }}"
            "{%- endif -%}"
            "{%- endfor -%}"
            "{%- if add_generation_prompt -%}" + expr(self.assistant_header) + "{%- endif -%}"
        )


TEMPLATES: dict[str, ChatTemplate] = {
    # openassistant-guanaco's turns, with EOS closing each answer so that generation ends there; a
    # system prompt is the text before the first turn.
    "guanaco": ChatTemplate(
        name="guanaco",
        system="{content}\n",
        user="### Human: {content}",
        assistant_header="### Assistant:",
        assistant_body=" {content}{eos}",
        assistant_footer="",
        stop_strings=("### Human:",),
    ),
    "chatml": ChatTemplate(
        name="chatml",
        system="<|im_start|>system\n{content}<|im_end|>\n",
        user="<|im_start|>user\n{content}<|im_end|>\n",
        assistant_header="<|im_start|>assistant\n",
        assistant_body="{content}<|im_end|>\n",
        assistant_footer="",
        stop_strings=("<|im_end|>",),
    ),
    "zephyr": ChatTemplate(
        name="zephyr",
        system="<|system|>\n{content}{eos}\n",
        user="<|user|>\n{content}{eos}\n",
        assistant_header="<|assistant|>\n",
        assistant_body="{content}{eos}",
        assistant_footer="\n",
        stop_strings=(),
    ),
}


def get_template(name: str) -> ChatTemplate:
    if name not in TEMPLATES:
        raise ValueError(f"unknown chat template {name!r} (known: {', '.join(TEMPLATES)})")
    return TEMPLATES[name]


def check_conversation(messages: Sequence[Message], complete: bool = True) -> None:
    """Raise ValueError unless `messages` is: an optional system message, then user and assistant turns
    alternating from a user turn; `complete` conversations end with the assistant (training data),
    the others with the user (a prompt awaiting the answer)."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"message {i} must be an object with 'role' and 'content'")
        if m["role"] not in ROLES:
            raise ValueError(f"message {i} has unknown role {m['role']!r} (known: {', '.join(ROLES)})")
        if not isinstance(m["content"], str):
            raise ValueError(f"message {i} ({m['role']}): content must be a string, got {type(m['content']).__name__}")
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    for i, m in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            where = (
                "a system message may only come first"
                if m["role"] == "system"
                else f"expected {expected}, got {m['role']}"
            )
            raise ValueError(f"message {i + len(messages) - len(turns)}: turns must alternate user/assistant ({where})")
    last = turns[-1]["role"] if turns else "system"
    if complete and last != "assistant":
        raise ValueError(f"the conversation does not end with an assistant message (last: {last})")
    if not complete and last != "user":
        raise ValueError(f"a prompt must end with a user message (last: {last})")


def render(
    template: ChatTemplate,
    messages: Sequence[Message],
    bos: str | None,
    eos: str | None,
    add_generation_prompt: bool = False,
) -> list[Segment]:
    """The conversation as text segments (adjacent ones of the same kind merged). `bos`/`eos` are the
    tokenizer's BOS/EOS token texts (None where it has none)."""
    if template.needs_eos() and not eos:
        raise ValueError(f"the {template.name} template needs a tokenizer with an EOS token")
    check_conversation(messages, complete=not add_generation_prompt)
    fill = lambda fmt, content: fmt.replace("{content}", content).replace("{eos}", eos or "")  # noqa: E731
    segments = [Segment(bos, False)] if bos else []
    for m in messages:
        if m["role"] == "assistant":
            segments += [
                Segment(template.assistant_header, False),
                Segment(fill(template.assistant_body, m["content"]), True),
                Segment(template.assistant_footer, False),
            ]
        else:
            segments.append(Segment(fill(getattr(template, m["role"]), m["content"]), False))
    if add_generation_prompt:
        segments.append(Segment(template.assistant_header, False))
    merged: list[Segment] = []
    for s in segments:
        if not s.text:
            continue
        if merged and merged[-1].loss == s.loss:
            merged[-1] = Segment(merged[-1].text + s.text, s.loss)
        else:
            merged.append(s)
    return merged


class SegmentEncoder:
    """Token ids and a loss mask for rendered segments, tokenized as transformers tokenizes the joined
    text: the tokenizer's special tokens (BOS, EOS, UNK) written in the text become their ids, and
    only text at the very start of the conversation gets SentencePiece's "▁" prefix.

    Each segment is encoded on its own, so a token never straddles a trained and an untrained segment.
    A tokenizer.json tokenizer encodes each piece through `tokenizers` as it is configured (a Metaspace
    prefix, if it adds one, is then added to every piece)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.specials: dict[str, int] = {}
        if tokenizer.backend == "sentencepiece":
            import sentencepiece
            from sentencepiece import sentencepiece_model_pb2

            sp = tokenizer.processor
            self.specials = {sp.id_to_piece(i): i for i in (sp.bos_id(), sp.eos_id(), sp.unk_id()) if i >= 0}
            proto = sentencepiece_model_pb2.ModelProto.FromString(sp.serialized_model_proto())
            proto.normalizer_spec.add_dummy_prefix = False
            self._no_prefix = sentencepiece.SentencePieceProcessor(model_proto=proto.SerializeToString())
        else:
            to_token = tokenizer.processor.id_to_token
            self.specials = {to_token(i): i for i in (tokenizer.bos_id, tokenizer.eos_id) if i is not None}
        self._split = (
            re.compile("(" + "|".join(map(re.escape, sorted(self.specials, key=len, reverse=True))) + ")")
            if self.specials
            else None
        )

    def token_text(self, token_id: int | None) -> str | None:
        """The text of a special token (what a template writes for it), or None."""
        return (
            next((text for text, i in self.specials.items() if i == token_id), None) if token_id is not None else None
        )

    @property
    def bos(self) -> str | None:
        return self.token_text(self.tokenizer.bos_id)

    @property
    def eos(self) -> str | None:
        return self.token_text(self.tokenizer.eos_id)

    def _encode_plain(self, text: str, at_start: bool) -> list[int]:
        if self.tokenizer.backend == "sentencepiece":
            return (self.tokenizer.processor if at_start else self._no_prefix).encode(text)
        return self.tokenizer.processor.encode(text, add_special_tokens=False).ids

    def encode(self, segments: Sequence[Segment]) -> tuple[list[int], list[bool]]:
        ids: list[int] = []
        mask: list[bool] = []
        for text, loss in segments:
            for piece in self._split.split(text) if self._split else [text]:
                if not piece:
                    continue
                new = [self.specials[piece]] if piece in self.specials else self._encode_plain(piece, at_start=not ids)
                ids += new
                mask += [loss] * len(new)
        return ids, mask

    def encode_text(self, text: str) -> list[int]:
        """The ids of a rendered string as one piece: what transformers' tokenizer gives for it."""
        return self.encode([Segment(text, False)])[0]

    def decode(self, ids: Sequence[int], at_start: bool = False) -> str:
        """The text of `ids`, special tokens written out: the inverse of `encode` on any run of its ids
        (`at_start`: the run opens the conversation, where SentencePiece added its "▁" prefix)."""
        if self.tokenizer.backend != "sentencepiece":
            return self.tokenizer.processor.decode(list(ids), skip_special_tokens=False)
        special_text = {i: text for text, i in self.specials.items()}
        text, run = "", []
        for i in list(ids) + [None]:
            if i is None or i in special_text:
                if run:
                    text += (self.tokenizer.processor if at_start and not text else self._no_prefix).decode(run)
                    run = []
                text += special_text.get(i, "")
            else:
                run.append(i)
        return text

    def encode_conversation(
        self, template: ChatTemplate, messages: Sequence[Message], add_generation_prompt: bool = False
    ) -> tuple[list[int], list[bool]]:
        return self.encode(render(template, messages, self.bos, self.eos, add_generation_prompt))


def hf_tokenizer_config(tokenizer, template: ChatTemplate, block_size: int) -> dict:
    """The tokenizer_config.json to ship with a chat model: the one the checkpoint converter would write
    (or the tokenizer folder's own, which wins), with `chat_template` set to `template`."""
    from lit_gpt.checkpoint import tokenizer_config_for_hf

    existing = tokenizer.folder / "tokenizer_config.json"
    own = json.loads(existing.read_text()) if existing.is_file() else {}
    return {**tokenizer_config_for_hf(tokenizer, block_size), **own, "chat_template": template.jinja}


def write_chat_template(folder: Path, template: ChatTemplate) -> None:
    """Set `chat_template` in a folder's tokenizer_config.json (created if missing): a Hugging Face folder
    exported from a model that was not fine-tuned here, or a LoRA merge."""
    from lit_gpt.checkpoint import _write_json

    path = Path(folder) / "tokenizer_config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    _write_json(path, {**config, "chat_template": template.jinja})


def _fine_tuned_with(folder: Path) -> ChatTemplate | None:
    """The template named in a fine-tuning checkpoint's train_state.json, if any."""
    state = Path(folder) / "train_state.json"
    if state.is_file():
        name = json.loads(state.read_text(encoding="utf-8")).get("config", {}).get("template")
        if name in TEMPLATES:
            return TEMPLATES[name]
    return None


def _configured_chat_template(folder: Path) -> str | list | None:
    """The `chat_template` entry of the folder's tokenizer_config.json (a Jinja string, or transformers'
    list of named templates), if any."""
    config = Path(folder) / "tokenizer_config.json"
    return json.loads(config.read_text(encoding="utf-8")).get("chat_template") if config.is_file() else None


def template_of(folder: Path) -> ChatTemplate | None:
    """The template a checkpoint or Hugging Face folder was fine-tuned with: its train_state.json's
    run config, else a tokenizer_config.json chat_template equal to one of ours; None if neither."""
    if (template := _fine_tuned_with(folder)) is not None:
        return template
    jinja = _configured_chat_template(folder)
    return next((t for t in TEMPLATES.values() if t.jinja == jinja), None)


def chat_template_text(folder: Path) -> str | None:
    """The Jinja chat template an export of the checkpoint or Hugging Face folder carries: the template it
    was fine-tuned with (as `template_of` finds it), else its tokenizer_config.json's chat_template, ours
    or not; None if neither."""
    if (template := _fine_tuned_with(folder)) is not None:
        return template.jinja
    jinja = _configured_chat_template(folder)
    if jinja is not None and not isinstance(jinja, str):
        raise ValueError(
            f"{Path(folder) / 'tokenizer_config.json'}: chat_template must be one Jinja string (named templates "
            f"are not supported)"
        )
    return jinja
