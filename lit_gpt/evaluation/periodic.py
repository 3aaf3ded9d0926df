"""lm-eval tasks on the model being trained, for the pretraining loop to call every N steps."""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn

from lit_gpt.tokenizer import Tokenizer


@lru_cache(maxsize=4)
def task_manager(include_path: str | None, tasks: Sequence[str] = ()):
    """An lm-eval TaskManager that knows `tasks`. When `include_path` defines all of them, lm-eval's
    own task folders (some 15,000 files, about 10 s to index) are left out."""
    from lm_eval.tasks import TaskManager

    if include_path is not None:
        local = TaskManager(include_path=include_path, include_defaults=False)
        if tasks and all(task in local.all_tasks for task in tasks):
            return local
    return TaskManager(include_path=include_path)


def flatten_results(results: dict) -> dict[str, float]:
    """lm-eval's {"task": {"acc,none": 0.5, "acc_stderr,none": ...}} -> {"task/acc": 0.5}: every
    numeric "metric,filter" entry except the standard errors; a filter other than "none" is kept as a
    suffix. Entries without a filter ("alias", "sample_len") are no metrics."""
    flat = {}
    for task, metrics in results.items():
        for key, value in metrics.items():
            metric, comma, filter_name = key.partition(",")
            if (
                not comma
                or metric.endswith("_stderr")
                or isinstance(value, bool)
                or not isinstance(value, (int, float))
            ):
                continue
            name = f"{task}/{metric}" if filter_name == "none" else f"{task}/{metric}/{filter_name}"
            flat[name] = float(value)
    return flat


def run_lm_eval_tasks(
    model: nn.Module,
    tokenizer: Tokenizer,
    tasks: list[str],
    limit: int | None = None,
    include_path: str | None = None,
    batch_size: int = 8,
    device: torch.device | None = None,
) -> dict[str, float]:
    """Zero-shot (unless a task says otherwise) lm-eval scores of an in-memory GPT, e.g.
    {"hellaswag/acc": 0.31, "hellaswag/acc_norm": 0.33}.

    `model` is used where it is (`device`, if given, must be where its weights are): pass the plain
    GPT, not a torch.compile'd one (every new input length would recompile). A model sharded by FSDP
    needs every rank to call this together (each computes the same scores; its forward gathers the
    shards); an unsharded one can be evaluated on rank 0 alone. The model's mode, RoPE length and the
    global random number generators are restored afterwards, so training continues as if nothing ran.
    `limit`: at most this many documents per task (None: all)."""
    from lm_eval import simple_evaluate

    from lit_gpt.evaluation.lm_eval_model import LitGPTLM

    weights_device = next(model.parameters()).device
    if device is not None and torch.device(device) != weights_device:
        raise ValueError(f"the model's weights are on {weights_device}, not on {device}")
    was_training, seq_length = model.training, model.max_seq_length
    python_rng, numpy_rng = random.getstate(), np.random.get_state()
    devices = [weights_device] if weights_device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            lm = LitGPTLM(model=model, tokenizer=tokenizer, batch_size=batch_size)
            output = simple_evaluate(
                model=lm,
                tasks=list(tasks),
                limit=limit,
                task_manager=task_manager(include_path, tuple(tasks)),
                log_samples=False,
                bootstrap_iters=0,
            )
    finally:
        random.setstate(python_rng)
        np.random.set_state(numpy_rng)
        model.max_seq_length = seq_length
        model.train(was_training)
    return flatten_results(output["results"])
