"""Loss and perplexity of a model on packed validation shards or on raw text.

Both go through `validate`, the function the training loop reports its validation loss with: a
token-mean cross-entropy (accumulated in float64) over fixed batches.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from lit_gpt.data.stream import build_val_loader
from lit_gpt.tokenizer import Tokenizer

IGNORE = -100  # targets the loss skips
SplitBatch = Callable[[Any], tuple[torch.Tensor, torch.Tensor]]


def split_packed(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A packed pretraining batch (B, T+1) -> inputs (B, T) and next-token targets (B, T)."""
    return batch[:, :-1], batch[:, 1:]


@torch.no_grad()
def validate(
    fabric, model: nn.Module, loader: Iterable, split_batch: SplitBatch = split_packed, ignore_index: int = IGNORE
) -> float:
    """Token-mean loss over the fixed validation batches of every rank."""
    model.eval()
    total = torch.zeros((), device=fabric.device, dtype=torch.float64)
    count = torch.zeros((), device=fabric.device, dtype=torch.float64)
    for batch in loader:
        x, y = split_batch(fabric.to_device(batch))
        n = (y != ignore_index).sum()
        total += model(x, targets=y).double() * n
        count += n
    model.train()
    total, count = fabric.all_reduce(torch.stack([total, count]), reduce_op="sum")
    if count.item() == 0:
        raise RuntimeError("the validation set holds no target tokens")
    return (total / count).item()


def single_device_fabric(device: str = "auto", precision: str | None = None):
    """A one-process Fabric on `device` (auto: cuda when present). `precision` None: bf16-mixed where
    the GPU has bf16, else 32-true: the training run's default."""
    import lightning as L

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if precision is None:
        precision = "bf16-mixed" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "32-true"
    devices = [device.index] if device.index is not None else 1
    return L.Fabric(accelerator=device.type, devices=devices, precision=precision)


def _result(loss: float, tokens: int) -> dict:
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": tokens}


def perplexity_on_shards(
    fabric,
    model: nn.Module,
    data_dir: str | Path,
    prefix: str,
    block_size: int,
    micro_batch_size: int,
    num_batches: int,
    world_size: int = 1,
) -> dict:
    """The validation loss the training loop reports for `model` on `{data_dir}/{prefix}_*.bin`,
    computed in one process: {"loss", "perplexity", "tokens"}.

    Give the run's block_size, micro batch size, validation batches per rank (`eval_batches`) and its
    number of ranks: the R ranks together scored the first R * num_batches * micro_batch_size samples
    (fewer when the set is smaller), which one process scores as R * num_batches batches. Equal to the
    run's number up to the order of summation and, under bf16, the precision's rounding."""
    per_rank = build_val_loader(data_dir, prefix, block_size, micro_batch_size, 0, world_size, num_batches)
    loader = build_val_loader(data_dir, prefix, block_size, micro_batch_size, 0, 1, len(per_rank) * world_size)
    loss = validate(fabric, model, loader)
    return _result(loss, len(loader) * micro_batch_size * block_size)


def read_documents(path: str | Path, text_field: str = "text") -> list[str]:
    """The documents of a file: one per line of a `.jsonl` (or `.jsonl.zst`) file, its `text_field`;
    any other file is one document."""
    path = Path(path)
    if path.name.endswith((".jsonl", ".jsonl.zst")):
        if path.suffix == ".zst":
            import zstandard

            lines = zstandard.open(path, "rt", encoding="utf-8").read().splitlines()
        else:
            lines = path.read_text(encoding="utf-8").splitlines()
        docs = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get(text_field), str):
                raise ValueError(f"{path}:{number}: no string field {text_field!r}")
            docs.append(row[text_field])
        return docs
    return [path.read_text(encoding="utf-8")]


def text_windows(
    tokens: np.ndarray, block_size: int, micro_batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, targets) batches that predict every token after the first exactly once: windows of
    `block_size` inputs one after the other, then a last window ending at the final token that sees a
    full context but scores only the tokens no earlier window scored (the others are IGNORE)."""
    tokens = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
    T, predicted = block_size, len(tokens) - 1
    if predicted < 1:
        raise ValueError("fewer than two tokens: nothing to predict")
    full = predicted // T
    for start in range(0, full, micro_batch_size):
        rows = range(start, min(start + micro_batch_size, full))
        windows = torch.stack([tokens[k * T : k * T + T + 1] for k in rows])
        yield windows[:, :-1], windows[:, 1:]
    left = predicted - full * T
    if left:
        window = tokens[-(T + 1) :]
        targets = window[1:].clone()
        targets[: len(targets) - left] = IGNORE
        yield window[None, :-1], targets[None]


def perplexity_on_text(
    fabric, model: nn.Module, tokenizer: Tokenizer, documents: list[str], block_size: int, micro_batch_size: int
) -> dict:
    """Loss and perplexity on documents encoded as data preparation does (BOS + tokens + EOS each,
    concatenated) and scored in windows of `block_size` (`text_windows`)."""
    tokens = tokenizer.encode_flat(documents, bos=True, eos=True)
    windows = list(text_windows(tokens, block_size, micro_batch_size))
    loss = validate(fabric, model, windows, split_batch=lambda pair: pair, ignore_index=IGNORE)
    return _result(loss, len(tokens) - 1)
