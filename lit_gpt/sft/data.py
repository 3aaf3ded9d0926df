"""Fine-tuning data: local files in three formats read into conversations, tokenized with a loss mask,
and served as length-bucketed micro batches by an endless, resumable loader.

Formats (one record per line for .jsonl; a JSON array for .json):
- "chat": `{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}`
- "guanaco": `{"text": "### Human: ...### Assistant: ...### Human: ..."}` (openassistant-guanaco)
- "alpaca": `{"instruction": "...", "input": "...", "output": "..."}` (input optional)

A bad record raises ValueError naming the file and line, or with `skip_bad` is skipped and counted.
Examples longer than the context are truncated (or dropped) and counted; `DataReport` tells it all.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from lit_gpt.sft.templates import ChatTemplate, Message, SegmentEncoder, check_conversation, render

Format = Literal["auto", "chat", "guanaco", "alpaca"]
IGNORE = -100


@dataclass
class DataReport:
    """What happened to the records: kept, skipped (by reason, with the first places), truncated, dropped."""

    conversations: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_at: list[str] = field(default_factory=list)
    truncated: int = 0
    dropped: int = 0
    boundary_merges: int = 0  # examples whose ids differ from the rendered text's (a merge spans a turn boundary)

    def skip(self, where: str, error: BadRecord) -> None:
        self.skipped[error.kind] += 1
        if len(self.skipped_at) < 5:
            self.skipped_at.append(f"{where}: {error}")

    def summary(self) -> str:
        text = (
            f"{self.conversations} conversations; {sum(self.skipped.values())} bad records skipped; "
            f"{self.truncated} truncated and {self.dropped} dropped for length"
        )
        if self.boundary_merges:
            text += (
                f"; in {self.boundary_merges} the tokenizer merges across a turn boundary, so their ids differ "
                f"from transformers' tokenization of the rendered text"
            )
        if self.skipped:
            text += (
                " (skipped: "
                + ", ".join(f"{n} {r}" for r, n in self.skipped.items())
                + "; first at "
                + "; ".join(self.skipped_at)
                + ")"
            )
        return text


class BadRecord(ValueError):
    def __init__(self, message: str, kind: str = "invalid record") -> None:
        super().__init__(message)
        self.kind = kind  # what the report counts it under


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed record or a BadRecord) for each record of a .jsonl file or a .json array."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        for number, line in enumerate(text.split("\n"), start=1):  # not splitlines: JSON strings may hold U+2028
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as e:
                    yield number, BadRecord(f"not JSON: {e.msg} (column {e.colno})", "not JSON")
        return
    # A JSON array, walked element by element so that every record keeps its line number.
    decoder, pos = json.JSONDecoder(), _skip_space(text, 0)
    counted = [0, 1]  # position and line reached so far: lines are counted once, not from the top each time

    def line_of(p: int) -> int:
        counted[1] += text.count("\n", counted[0], p)
        counted[0] = p
        return counted[1]

    if not text.startswith("[", pos):
        raise ValueError(f"{path}:{line_of(pos)}: expected a JSON array of records (or use .jsonl, one per line)")
    pos = _skip_space(text, pos + 1)
    while not text.startswith("]", pos):
        try:
            record, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: not JSON: {e.msg} (column {e.colno})") from None
        yield line_of(pos), record
        pos = _skip_space(text, end)
        if text.startswith(",", pos):
            pos = _skip_space(text, pos + 1)
        elif not text.startswith("]", pos):
            raise ValueError(f"{path}:{line_of(pos)}: expected ',' or ']' between records")


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


_GUANACO_TURN = re.compile(r"### (Human|Assistant):")


def guanaco_messages(text: str) -> list[Message]:
    """Turns of a guanaco `text`; text before the first turn is a system prompt."""
    parts = _GUANACO_TURN.split(text)
    messages = [{"role": "system", "content": parts[0].strip()}] if parts[0].strip() else []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        messages.append({"role": "user" if speaker == "Human" else "assistant", "content": content.strip()})
    if len(messages) == (1 if parts[0].strip() else 0):
        raise BadRecord("no '### Human:' / '### Assistant:' turns in 'text'")
    return messages


def alpaca_messages(record: dict[str, Any]) -> list[Message]:
    for key in ("instruction", "output"):
        if not isinstance(record.get(key), str):
            raise BadRecord(f"missing or non-string field {key!r}")
    extra = record.get("input") or ""
    if not isinstance(extra, str):
        raise BadRecord("field 'input' must be a string")
    prompt = record["instruction"] + ("\n\n" + extra if extra.strip() else "")
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": record["output"]}]


def detect_format(record: Any) -> str:
    if isinstance(record, dict):
        for key, name in (("messages", "chat"), ("text", "guanaco"), ("instruction", "alpaca")):
            if key in record:
                return name
    raise BadRecord("cannot tell the format: expected a 'messages', 'text' or 'instruction' field")


def to_messages(record: Any, fmt: str) -> list[Message]:
    if not isinstance(record, dict):
        raise BadRecord(f"a record must be a JSON object, got {type(record).__name__}")
    if fmt == "chat":
        if "messages" not in record:
            raise BadRecord("missing field 'messages'")
        messages = record["messages"]
    elif fmt == "guanaco":
        if not isinstance(record.get("text"), str):
            raise BadRecord("missing or non-string field 'text'")
        messages = guanaco_messages(record["text"])
    else:
        messages = alpaca_messages(record)
    try:
        check_conversation(messages, complete=True)
    except ValueError as e:
        raise BadRecord(str(e), "invalid conversation") from None
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def data_files(path: Path) -> list[Path]:
    """A file, or every .jsonl/.json file under a folder (sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"fine-tuning data {path} not found")
    files = sorted(p for p in path.rglob("*") if p.suffix in (".jsonl", ".json") and p.is_file())
    if not files:
        raise FileNotFoundError(f"{path}: no .jsonl or .json files")
    return files


def read_conversations(
    path: Path, fmt: Format = "auto", skip_bad: bool = False, report: DataReport | None = None
) -> list[list[Message]]:
    """All conversations of a file or folder. `fmt="auto"` reads each file's format off its first record."""
    report = report if report is not None else DataReport()
    conversations = []
    for file in data_files(path):
        file_format = None if fmt == "auto" else fmt
        for line, record in _records(file):
            try:
                if isinstance(record, BadRecord):
                    raise record
                file_format = file_format or detect_format(record)
                conversations.append(to_messages(record, file_format))
            except BadRecord as e:
                if not skip_bad:
                    raise ValueError(f"{file}:{line}: {e} (pass --skip_bad true to skip such records)") from None
                report.skip(f"{file}:{line}", e)
    report.conversations += len(conversations)
    return conversations


@dataclass
class Example:
    ids: np.ndarray  # int64 token ids
    loss: np.ndarray  # bool: the token is a target

    def __len__(self) -> int:
        return len(self.ids)


def tokenize(
    conversations: Sequence[list[Message]],
    encoder: SegmentEncoder,
    template: ChatTemplate,
    max_seq_length: int,
    overlong: Literal["truncate", "drop"] = "truncate",
    report: DataReport | None = None,
) -> list[Example]:
    """Examples of at most `max_seq_length + 1` tokens (the model reads all but the last).

    A longer one is cut to that length (`truncate`), or left out (`drop`); one with no trained token
    within that length is left out either way. Both are counted in `report`."""
    report = report if report is not None else DataReport()
    limit = max_seq_length + 1
    examples = []
    for messages in conversations:
        segments = render(template, messages, encoder.bos, encoder.eos)
        ids, loss = encoder.encode(segments)
        report.boundary_merges += encoder.encode_text("".join(s.text for s in segments)) != ids
        if len(ids) > limit:
            if overlong == "drop":
                report.dropped += 1
                continue
            ids, loss = ids[:limit], loss[:limit]
            if not any(loss[1:]):  # the first token is never a target
                report.dropped += 1
                continue
            report.truncated += 1
        examples.append(Example(np.asarray(ids, np.int64), np.asarray(loss, bool)))
    return examples


def split_validation(conversations: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, validation): a seeded random `fraction` of the conversations held out (at least one)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return conversations, []
    order = np.random.default_rng(seed).permutation(len(conversations))
    n_val = max(1, round(fraction * len(conversations)))
    held = set(order[:n_val].tolist())
    return (
        [c for i, c in enumerate(conversations) if i not in held],
        [c for i, c in enumerate(conversations) if i in held],
    )


def collate(
    examples: Sequence[Example], max_seq_length: int, pad_id: int = 0, pad_multiple: int = 8
) -> dict[str, torch.Tensor]:
    """Right-padded `input_ids` and `labels` (-100 where there is no loss and on padding), both
    (B, T + 1) with T the longest input rounded up to `pad_multiple` (at most `max_seq_length`)."""
    longest = max(len(e) for e in examples) - 1
    width = min(-(-longest // pad_multiple) * pad_multiple, max_seq_length) + 1
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for row, e in enumerate(examples):
        ids = torch.from_numpy(e.ids)
        input_ids[row, : len(e)] = ids
        labels[row, : len(e)] = ids.masked_fill(~torch.from_numpy(e.loss), IGNORE)
    return {"input_ids": input_ids, "labels": labels}


def split_chat_batch(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """A collated batch -> inputs (B, T) and next-token targets (B, T) for the trainer."""
    return batch["input_ids"][:, :-1], batch["labels"][:, 1:]


class ChatBatches:
    """Endless micro batches of one rank, deterministic in (seed, epoch) and resumable exactly.

    Each epoch shuffles the examples, cuts them into groups of `bucket_batches` global micro batches
    (micro_batch_size x world_size examples each), sorts every group by length so that a batch holds
    examples of similar length (little padding), and shuffles the order of the batches. Rank r takes
    the r-th slice of each global micro batch. The examples an epoch cannot fill a global batch with
    are left out of that epoch (other ones next epoch). `state_dict()` is (epoch, batches handed out)."""

    def __init__(
        self,
        examples: Sequence[Example],
        micro_batch_size: int,
        max_seq_length: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        pad_id: int = 0,
        bucket_batches: int = 16,
    ) -> None:
        self.examples, self.micro_batch_size, self.max_seq_length = list(examples), micro_batch_size, max_seq_length
        self.seed, self.rank, self.world_size, self.pad_id, self.bucket_batches = (
            seed,
            rank,
            world_size,
            pad_id,
            bucket_batches,
        )
        self.lengths = np.array([len(e) for e in self.examples])
        if len(self.examples) < micro_batch_size * world_size:
            raise ValueError(
                f"{len(self.examples)} training examples cannot fill one global micro batch of "
                f"{micro_batch_size} x {world_size}"
            )
        self.epoch, self.batch = 0, 0
        self._plan: tuple[int, list[np.ndarray]] | None = None

    @property
    def batches_per_epoch(self) -> int:
        return len(self.examples) // (self.micro_batch_size * self.world_size)

    def epoch_plan(self, epoch: int) -> list[np.ndarray]:
        """This rank's example indices for every micro batch of `epoch`."""
        rng = np.random.default_rng([self.seed, epoch])
        group = self.micro_batch_size * self.world_size
        order = rng.permutation(len(self.examples))[: self.batches_per_epoch * group]
        batches = []
        for start in range(0, len(order), group * self.bucket_batches):
            chunk = order[start : start + group * self.bucket_batches]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + group] for i in range(0, len(chunk), group)]
        lo = self.rank * self.micro_batch_size
        return [batches[i][lo : lo + self.micro_batch_size] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            if self._plan is None or self._plan[0] != self.epoch:
                self._plan = (self.epoch, self.epoch_plan(self.epoch))
            plan = self._plan[1]
            while self.batch < len(plan):
                indices = plan[self.batch]
                self.batch += 1  # before the yield: a checkpoint taken after this batch resumes after it
                yield self.collate(indices)
            self.epoch, self.batch = self.epoch + 1, 0

    def collate(self, indices) -> dict[str, torch.Tensor]:
        return collate([self.examples[i] for i in indices], self.max_seq_length, self.pad_id)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch, "group": self.micro_batch_size * self.world_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        group = self.micro_batch_size * self.world_size
        if int(state["group"]) != group:
            # another micro batch size or device count: the same number of examples into the epoch, though
            # the rest of it comes in another order than the interrupted run would have taken
            self.batch = self.batch * int(state["group"]) // group


def validation_batches(
    examples: Sequence[Example],
    micro_batch_size: int,
    max_seq_length: int,
    rank: int = 0,
    world_size: int = 1,
    pad_id: int = 0,
) -> list[dict[str, torch.Tensor]]:
    """The fixed validation batches of one rank, sorted by length. Every rank gets the same number of
    batches (a sharded model needs every rank in every forward), so up to world_size - 1 examples of
    the set are left out."""
    order = np.argsort([len(e) for e in examples], kind="stable")
    per_rank = len(order) // world_size
    mine = order[rank::world_size][:per_rank]
    return [
        collate([examples[i] for i in mine[s : s + micro_batch_size]], max_seq_length, pad_id)
        for s in range(0, per_rank, micro_batch_size)
    ]


def pack(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Rows of example indices, each row's lengths summing to at most `capacity`: first fit, in the given
    order (a shuffled order keeps rows a mix of lengths)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i, n in enumerate(lengths):
        if n > capacity:
            raise ValueError(f"an example of {n} tokens does not fit a row of {capacity}")
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(capacity - n)
    return rows


def collate_packed(rows: Sequence[Sequence[Example]], max_seq_length: int, pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Rows of whole conversations laid end to end, (B, max_seq_length + 1), padded at the end. Each
    conversation's first token (BOS) is never a target, so no target crosses from one into the next;
    the model's document mask keeps attention inside each."""
    width = max_seq_length + 1
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for e in row:
            ids = torch.from_numpy(e.ids)
            input_ids[r, at : at + len(e)] = ids
            labels[r, at : at + len(e)] = ids.masked_fill(~torch.from_numpy(e.loss), IGNORE)
            at += len(e)
    return {"input_ids": input_ids, "labels": labels}


class PackedBatches(ChatBatches):
    """Like ChatBatches, but a micro batch holds `micro_batch_size` full rows of max_seq_length + 1
    tokens, each packed with whole conversations (no padding but at a row's end). Each epoch shuffles
    the conversations and packs them first fit; rank r takes the r-th slice of each global micro batch
    of rows; the rows an epoch cannot fill a global batch with are left out of it. Deterministic in
    (seed, epoch) and resumable exactly, like ChatBatches."""

    def __init__(
        self,
        examples: Sequence[Example],
        micro_batch_size: int,
        max_seq_length: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        pad_id: int = 0,
    ) -> None:
        self.examples, self.micro_batch_size, self.max_seq_length = list(examples), micro_batch_size, max_seq_length
        self.seed, self.rank, self.world_size, self.pad_id = seed, rank, world_size, pad_id
        self.lengths = np.array([len(e) for e in self.examples])
        self.epoch, self.batch = 0, 0
        self._plan = None
        if self.rows_in_epoch(0) < micro_batch_size * world_size:
            raise ValueError(
                f"{len(self.examples)} training examples pack into {self.rows_in_epoch(0)} rows of "
                f"{max_seq_length + 1} tokens, too few for one global micro batch of "
                f"{micro_batch_size} x {world_size}"
            )

    def _rows(self, epoch: int) -> list[np.ndarray]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
        return [order[row] for row in pack(self.lengths[order].tolist(), self.max_seq_length + 1)]

    def rows_in_epoch(self, epoch: int) -> int:
        return len(self._rows(epoch))

    @property
    def batches_per_epoch(self) -> int:
        return self.rows_in_epoch(self.epoch) // (self.micro_batch_size * self.world_size)

    def epoch_plan(self, epoch: int) -> list[list[np.ndarray]]:
        rows = self._rows(epoch)
        group = self.micro_batch_size * self.world_size
        lo = self.rank * self.micro_batch_size
        return [
            rows[start + lo : start + lo + self.micro_batch_size]
            for start in range(0, len(rows) // group * group, group)
        ]

    def collate(self, rows) -> dict[str, torch.Tensor]:
        return collate_packed([[self.examples[i] for i in row] for row in rows], self.max_seq_length, self.pad_id)

    def real_tokens_per_row(self) -> float:
        """Mean tokens of conversation (not padding) in a row of epoch 0."""
        return float(self.lengths.sum()) / self.rows_in_epoch(0)
