"""Chatting with a fine-tuned model: the conversation rendered by its template, the answer streamed as
text, stopped at EOS or at one of the template's stop strings; the oldest turns give way when the
conversation outgrows the context."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from lit_gpt.checkpoint import checkpoint_folder
from lit_gpt.generate import generate
from lit_gpt.inference import load_for_inference
from lit_gpt.model import GPT
from lit_gpt.sft.templates import ChatTemplate, Message, SegmentEncoder, get_template, template_of
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.training.checkpointing import find_checkpoint


class StopStream:
    """Turns generated token ids into text as it becomes final: it holds back an incomplete UTF-8
    character and any tail that could be the start of a stop string, and ends at a stop string."""

    def __init__(self, tokenizer: Tokenizer, stop_strings: Sequence[str]) -> None:
        self.tokenizer, self.stop_strings = tokenizer, tuple(stop_strings)
        self.ids: list[int] = []
        self.text, self.emitted, self.stopped = "", 0, False

    def add(self, token_id: int) -> str:
        """The newly final text after `token_id` ("" while it is undecided)."""
        self.ids.append(token_id)
        self.text = self.tokenizer.decode(self.ids)
        hits = [self.text.find(s) for s in self.stop_strings if s in self.text]
        if hits:
            self.text, self.stopped = self.text[: min(hits)], True
            return self._emit(len(self.text))
        end = len(self.text)
        if self.text.endswith("\ufffd"):  # a character whose last bytes are still to come
            end -= 1
        for s in self.stop_strings:
            for k in range(min(len(s) - 1, end), 0, -1):
                if self.text[:end].endswith(s[:k]):
                    end -= k
                    break
        return self._emit(end)

    def finish(self) -> str:
        return self._emit(len(self.text))

    def _emit(self, end: int) -> str:
        if end <= self.emitted:
            return ""
        new, self.emitted = self.text[self.emitted : end], end
        return new


class ChatSession:
    """A multi-turn conversation with `model`; `reply` streams the answer to one user message."""

    def __init__(
        self,
        model: GPT,
        tokenizer: Tokenizer,
        template: ChatTemplate,
        system_prompt: str | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.7,
        top_k: int | None = 50,
        top_p: float | None = None,
        seed: int = 1234,
    ) -> None:
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.encoder = SegmentEncoder(tokenizer)
        self.system_prompt, self.max_new_tokens = system_prompt, max_new_tokens
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        device = model.lm_head.weight.device
        self.generator = torch.Generator(device).manual_seed(seed)
        self.history: list[Message] = []
        self.dropped_turns = 0  # turns left out of the prompt because the context is full

    def reset(self) -> None:
        self.history, self.dropped_turns = [], 0

    def prompt(self, user_text: str) -> tuple:
        """Token ids of the conversation so far plus `user_text` and the assistant header, and the
        number of tokens left to generate; the oldest turns are left out until it fits the context."""
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        turns = self.history + [{"role": "user", "content": user_text}]
        context = self.model.max_seq_length
        while True:
            ids, _ = self.encoder.encode_conversation(self.template, system + turns, add_generation_prompt=True)
            room = context - len(ids)
            if room >= min(self.max_new_tokens, context // 4) or len(turns) == 1:
                break
            turns = turns[2:]  # the oldest question and its answer
            self.dropped_turns += 1
        if room < 1:
            raise ValueError(
                f"the message is too long: {len(ids)} prompt tokens leave no room in the context of {context}"
            )
        return ids, min(self.max_new_tokens, room)

    def reply(self, user_text: str) -> Iterator[str]:
        """Stream the answer; once it is complete it joins the history."""
        ids, budget = self.prompt(user_text)
        stream = StopStream(self.tokenizer, self.template.stop_strings)
        eos = self.tokenizer.eos_id
        for token in generate(
            self.model, torch.tensor(ids), budget, self.temperature, self.top_k, self.top_p, eos, self.generator
        ):
            if token == eos:
                break
            piece = stream.add(token)
            if piece:
                yield piece
            if stream.stopped:
                break
        tail = stream.finish()
        if tail:
            yield tail
        self.history += [{"role": "user", "content": user_text}, {"role": "assistant", "content": stream.text.strip()}]


def open_session(
    checkpoint: Path | None = None,
    template: str | None = None,
    system_prompt: str | None = None,
    max_new_tokens: int = 256,
    temperature: float = 0.7,
    top_k: int | None = 50,
    top_p: float | None = None,
    seed: int = 1234,
    device: str = "auto",
    dtype: str | None = None,
    tokenizer_dir: Path | None = None,
    default_run: Path | None = None,
    hint: str = "",
) -> ChatSession:
    """Load a checkpoint (lit, pretraining/fine-tuning DCP, or Hugging Face folder) into a ChatSession,
    with the template it was fine-tuned with unless `template` names one. Without `checkpoint`, the newest
    of the run folder `default_run` (`hint` ends the error when it has none)."""
    path = find_checkpoint(checkpoint, default_run, hint=hint)
    folder = checkpoint_folder(path)
    chat_template = get_template(template) if template else template_of(folder)
    if chat_template is None:
        raise ValueError(f"{folder} does not say which chat template it was fine-tuned with: pass --template")
    loaded = load_for_inference(path, device, dtype, tokenizer_dir)
    print(
        f"loaded {path} ({loaded.config.name or 'model'}, context {loaded.config.block_size}), template "
        f"{chat_template.name}",
        file=sys.stderr,
    )
    return ChatSession(
        loaded.model, loaded.tokenizer, chat_template, system_prompt, max_new_tokens, temperature, top_k, top_p, seed
    )
