"""Training checkpoints: model and optimizer through torch distributed checkpoint (sharded under
FSDP2, loadable on any number of ranks), plus a JSON train state and per-rank random states.

Layout of `{out_dir}/checkpoints/step-{step:09d}/`:
    .metadata, __*.distcp   model and optimizer (DCP; keys "model.*", "optimizer.*")
    train_state.json        step, tokens, data-stream state, counters, the full run config
    model_config.yaml       the model's Config (the converters read it)
    rng/rank_{r}.pt         Python, NumPy, torch CPU and CUDA random states of rank r
    tokenizer files         copied, so the folder converts and generates on its own

A checkpoint is written into `step-N.tmp` and renamed into place only once every rank has written its
part, so a crash mid-write leaves the previous checkpoints untouched; `--resume auto` only ever sees
whole ones. Steps are compared as integers, never as strings.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

STEP_DIR = re.compile(r"^step-(\d+)$")
TRAIN_STATE = "train_state.json"


def step_dir(checkpoint_root: Path, step: int) -> Path:
    return checkpoint_root / f"step-{step:09d}"


def list_checkpoints(checkpoint_root: Path) -> List[tuple]:
    """(step, path) of every complete checkpoint, oldest first, ordered by the step number."""
    if not checkpoint_root.is_dir():
        return []
    found = []
    for p in checkpoint_root.iterdir():
        m = STEP_DIR.match(p.name)
        if m and p.is_dir() and (p / TRAIN_STATE).is_file() and (p / ".metadata").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(checkpoint_root: Path) -> Optional[Path]:
    found = list_checkpoints(checkpoint_root)
    return found[-1][1] if found else None


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _rank() -> int:
    return dist.get_rank() if _distributed() else 0


def _barrier() -> None:
    if _distributed():
        dist.barrier()


def capture_rng_state() -> Dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(
    checkpoint_root: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train_state: Dict[str, Any],
    extra_files: Dict[str, Path],
    keep_last: Optional[int] = None,
) -> Path:
    """Write a checkpoint atomically on all ranks; return its final path.

    `model` and `optimizer` are the unwrapped objects (plain, DDP or FSDP2). `extra_files` maps file
    names to copy into the folder (rank 0 copies them). `keep_last` prunes older checkpoints after the
    new one is in place."""
    final = step_dir(checkpoint_root, step)
    tmp = final.with_name(final.name + ".tmp")
    rank = _rank()
    if rank == 0:
        if tmp.exists():
            shutil.rmtree(tmp)  # left over from a crash while writing this very step
        tmp.mkdir(parents=True)
    _barrier()
    state = {
        "model": get_model_state_dict(model, options=_model_options(model)),
        "optimizer": get_optimizer_state_dict(model, optimizer),
    }
    dcp.save(state, checkpoint_id=tmp, no_dist=not _distributed())
    (tmp / "rng").mkdir(exist_ok=True)
    torch.save(capture_rng_state(), tmp / "rng" / f"rank_{rank}.pt")
    _barrier()
    if rank == 0:
        for name, src in extra_files.items():
            shutil.copyfile(src, tmp / name)
        _write_json(tmp / TRAIN_STATE, train_state)
        if final.exists():  # the same step saved again (e.g. a signal right after a periodic save)
            shutil.rmtree(final)
        os.replace(tmp, final)
        if keep_last:
            for _, old in list_checkpoints(checkpoint_root)[:-keep_last]:
                shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def _model_options(model: torch.nn.Module) -> StateDictOptions:
    """A model with frozen parameters (LoRA) checkpoints only its trainable ones (the adapter): the frozen
    base is loaded again from its own files on resume."""
    frozen = any(not p.requires_grad for p in model.parameters())
    return StateDictOptions(ignore_frozen_params=frozen)


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer]) -> Dict[str, Any]:
    """Load model (and optimizer) in place from a checkpoint folder written by `save_checkpoint`, on
    any number of ranks (DCP reshards); restore this rank's random state when the folder has one.
    Returns the train state."""
    path = Path(path)
    if not (path / ".metadata").is_file() or not (path / TRAIN_STATE).is_file():
        raise FileNotFoundError(
            f"{path} is not a complete training checkpoint (expected .metadata and {TRAIN_STATE} inside)"
        )
    options = _model_options(model)
    state: Dict[str, Any] = {"model": get_model_state_dict(model, options=options)}
    if optimizer is not None:
        state["optimizer"] = get_optimizer_state_dict(model, optimizer)
    dcp.load(state, checkpoint_id=path, no_dist=not _distributed())  # fails on any key the checkpoint lacks
    set_model_state_dict(model, state["model"], options=StateDictOptions(strict=not options.ignore_frozen_params))
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, state["optimizer"])
    rng_file = path / "rng" / f"rank_{_rank()}.pt"
    if rng_file.is_file():
        restore_rng_state(torch.load(rng_file, weights_only=False))
    return json.loads((path / TRAIN_STATE).read_text())


def resume_path(resume: Optional[str], checkpoint_root: Path) -> Optional[Path]:
    """The checkpoint a run continues from: "auto" the newest in `checkpoint_root` (None if there is
    none), a path that folder; None starts afresh and refuses a `checkpoint_root` that holds checkpoints."""
    if resume is None:
        if list_checkpoints(checkpoint_root):
            raise FileExistsError(
                f"{checkpoint_root} already holds checkpoints; pass --resume auto to continue that run, or "
                f"choose another --out_dir"
            )
        return None
    if resume == "auto":
        return latest_checkpoint(checkpoint_root)
    path = Path(resume)
    if not path.is_dir():
        raise FileNotFoundError(f"--resume {resume}: no such checkpoint folder")
    return path


def check_resumable(saved: Dict[str, Any], current: Dict[str, Any], fixed: Sequence[str]) -> None:
    """Refuse to resume when one of the run-config options in `fixed` (those the model or the data
    stream depend on) changed since the checkpoint was written."""
    changed = [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in fixed if saved.get(k) != current.get(k)]
    if changed:
        raise ValueError("cannot resume: options that fix the model or the data stream changed ("
                         + "; ".join(changed) + ")")


def remove_stale_temporaries(checkpoint_root: Path) -> None:
    """Drop half-written `*.tmp` checkpoint folders of an earlier, interrupted run (rank 0 only)."""
    if _rank() == 0 and checkpoint_root.is_dir():
        for p in checkpoint_root.glob("step-*.tmp"):
            shutil.rmtree(p, ignore_errors=True)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)
