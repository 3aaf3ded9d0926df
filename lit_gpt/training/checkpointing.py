"""Training checkpoints: model and optimizer through torch distributed checkpoint (sharded under
FSDP2, loadable on any number of ranks), plus a JSON train state and per-rank random states.

Layout of `{out_dir}/checkpoints/step-{step:09d}/`:
    .metadata, __*.distcp   the tensors of model and optimizer (DCP; keys "model.*", "optimizer.*")
    state_values.json       every other value of that state (the optimizer's param_groups), as JSON
    train_state.json        step, tokens, data-stream state, counters, the full run config
    files.json              written last: size and SHA-256 of every other file
    model_config.yaml       the model's Config (the converters read it)
    rng/rank_{r}.pt         Python, NumPy, torch CPU and CUDA random states of rank r
    tokenizer files         copied, so the folder converts and generates on its own

Loading runs no code from the checkpoint: DCP holds tensors only (torch would pickle any other value
into a `.distcp` and unpickle it with `weights_only=False` on load), a byte item in the metadata is
refused, and everything goes through lit_gpt/safe_load.py. A checkpoint written before
state_values.json holds its param_groups as DCP byte items; they load with `weights_only=True`.

A checkpoint is written into `step-N.tmp` and renamed into place only once every rank has written its
part, so a crash mid-write leaves the previous checkpoints untouched. A folder damaged later (a full
disk, a copy cut short, bytes changed in place) no longer matches its `files.json`: `--resume auto` skips
it with a warning and takes the newest whole one. Steps are compared as integers, never as strings.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn as nn
from torch.distributed.checkpoint.metadata import BytesStorageMetadata
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor

from lit_gpt.data.shards import file_sha256
from lit_gpt.safe_load import UnsafeCheckpointError, load_dcp, load_torch_file, read_dcp_metadata, single_process_dcp
from lit_gpt.training.disk import (
    NoSpaceLeft,
    estimated_checkpoint_bytes,
    free_bytes,
    out_of_space,
    warn_if_short_of_space,
)

STEP_DIR = re.compile(r"^step-(\d+)$")
TRAIN_STATE = "train_state.json"
STATE_VALUES = "state_values.json"


def step_dir(checkpoint_root: Path, step: int) -> Path:
    return checkpoint_root / f"step-{step:09d}"


def list_checkpoints(checkpoint_root: Path) -> list[tuple]:
    """(step, path) of every complete checkpoint, oldest first, ordered by the step number."""
    if not checkpoint_root.is_dir():
        return []
    found = []
    for p in checkpoint_root.iterdir():
        m = STEP_DIR.match(p.name)
        if m and p.is_dir() and (p / TRAIN_STATE).is_file() and (p / ".metadata").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(checkpoint_root: Path) -> Path | None:
    found = list_checkpoints(checkpoint_root)
    return found[-1][1] if found else None


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _rank() -> int:
    return dist.get_rank() if _distributed() else 0


def _barrier(group=None) -> None:
    if _distributed():
        dist.barrier(group=group)


def capture_rng_state() -> dict[str, Any]:
    """The random states as tensors and plain values only, so that they load with weights_only=True."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": random.getstate(),  # (version, tuple of ints, float or None)
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(
    checkpoint_root: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train_state: dict[str, Any],
    extra_files: dict[str, Path],
    keep_last: int | None = None,
) -> Path:
    """Write a checkpoint atomically on all ranks; return its final path.

    `model` and `optimizer` are the unwrapped objects (plain, DDP or FSDP2). `extra_files` maps file
    names to copy into the folder (rank 0 copies them). `keep_last` prunes older checkpoints after the
    new one is in place."""
    save = _Save(checkpoint_root, step, train_state, extra_files, keep_last, model)
    try:
        tensors, save.values = split_state(_training_state(model, optimizer))
        with single_process_dcp():
            dcp.save(tensors, checkpoint_id=save.tmp, no_dist=not _distributed())
        save.write_rng_state()
    except BaseException as e:  # torch's CheckpointException derives from BaseException
        save.failed(e)
    return save.complete()


class _Save:
    """One checkpoint on its way: `step-N.tmp` made (rank 0) when created; `complete()`, once every rank
    has written its shards, adds the train state, `values` (the state's non-tensor values, encoded by
    `split_state`), the extra files and `files.json` (last) and renames the folder into place, then prunes
    to `keep_last`. `group` is the process group of its barriers after creation."""

    def __init__(
        self,
        checkpoint_root: Path,
        step: int,
        train_state: dict[str, Any],
        extra_files: dict[str, Path],
        keep_last: int | None,
        model: nn.Module,
        group=None,
    ) -> None:
        self.root, self.step, self.train_state = checkpoint_root, step, train_state
        self.extra_files, self.keep_last, self.group = extra_files, keep_last, group
        self.values: list = []
        self.final = step_dir(checkpoint_root, step)
        self.tmp = self.final.with_name(self.final.name + ".tmp")
        self.rank = _rank()
        self.needed = estimated_checkpoint_bytes(model)
        if self.rank == 0:
            if self.tmp.exists():
                shutil.rmtree(self.tmp)  # left over from a crash while writing this very step
            warn_if_short_of_space(checkpoint_root, self.needed, f"saving step {step}")
            self.tmp.mkdir(parents=True)
        _barrier()

    def write_rng_state(self) -> None:
        (self.tmp / "rng").mkdir(exist_ok=True)
        torch.save(capture_rng_state(), self.tmp / "rng" / f"rank_{self.rank}.pt")

    def complete(self) -> Path:
        try:
            _barrier(self.group)
            if self.rank == 0:
                for name, src in self.extra_files.items():
                    shutil.copyfile(src, self.tmp / name)
                _write_json(self.tmp / TRAIN_STATE, self.train_state)
                _write_json(self.tmp / STATE_VALUES, {"values": self.values})
                write_completeness_record(self.tmp)  # last: its presence says every other file is in place
        except BaseException as e:
            self.failed(e)
        if self.rank == 0:
            if self.final.exists():  # the same step saved again (e.g. a signal right after a periodic save)
                shutil.rmtree(self.final)
            os.replace(self.tmp, self.final)
            if self.keep_last:
                for _, old in list_checkpoints(self.root)[: -self.keep_last]:
                    shutil.rmtree(old, ignore_errors=True)
        _barrier(self.group)
        return self.final

    def failed(self, e: BaseException) -> None:
        """Remove the partial folder and raise (NoSpaceLeft when the disk ran full)."""
        if self.rank == 0:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if out_of_space(e, self.root, self.needed):
            kept = latest_checkpoint(self.root)
            raise NoSpaceLeft(
                f"no space left on {self.root} while saving step {self.step} (about {self.needed / 1e9:.2f} GB needed, "
                f"{free_bytes(self.root) / 1e9:.2f} GB free); removed the partial {self.tmp.name}, kept the earlier "
                f"checkpoints ({kept.name if kept else 'none yet'})"
            ) from e
        raise e


def _training_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    return _plain_tensors(
        {
            "model": get_model_state_dict(model, options=_model_options(model)),
            "optimizer": get_optimizer_state_dict(model, optimizer),
        }
    )


class AsyncCheckpointer:
    """Checkpoints written while training goes on (torch's asynchronous DCP save).

    `save()` copies the model and optimizer tensors into CPU buffers (pinned where CUDA is) that it keeps
    for the next saves, and returns as soon as that copy is taken; a thread writes the shards. A thread of
    ours then completes the checkpoint like a synchronous one (train state, files.json, rename of the .tmp
    folder, pruning) as soon as the shards are written, so that a process killed afterwards resumes from
    it. `wait()` returns once that is done: called by the next `save()` (at most one save in flight), and
    by `close()` at the end of training; an error of the background work is raised there. The background
    writes and completions use a gloo group of their own, so that their collectives never interleave with
    training's. A crash before completion leaves a `.tmp` folder and the earlier checkpoints."""

    def __init__(self) -> None:
        self._pending: tuple | None = None  # (future of the shards' write, future of the completion)
        self._group = None
        self._staging = _PinnedStaging()

    def save(
        self,
        checkpoint_root: Path,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_state: dict[str, Any],
        extra_files: dict[str, Path],
        keep_last: int | None = None,
    ) -> Path:
        """Start writing a checkpoint (after completing the one in flight); return its final path."""
        self.wait()
        if _distributed() and self._group is None:
            self._group = dist.new_group(backend="gloo")
        save = _Save(checkpoint_root, step, train_state, extra_files, keep_last, model, group=self._group)
        try:
            # staged here, before training changes the weights (and the scheduler the param_groups); async_save
            # gets the copy as it is (and, given no staging future, answers with the plain future of the write)
            tensors, save.values = split_state(_training_state(model, optimizer))
            staged = self._staging.copy(tensors)
            written = dcp.async_save(
                staged,
                checkpoint_id=save.tmp,
                process_group=self._group,
                async_stager=_AlreadyStaged(),
                no_dist=not _distributed(),
            )
            save.write_rng_state()
        except BaseException as e:
            save.failed(e)
        self._pending = (written, _complete_when_written(written, save))
        return save.final

    def wait(self) -> Path | None:
        """Wait for the save in flight, if any, to be complete; return its path."""
        if self._pending is None:
            return None
        _, completed = self._pending
        self._pending = None
        return completed.result()

    def close(self) -> None:
        self.wait()
        self._staging = _PinnedStaging()  # lets the buffers go

    def abandon(self) -> None:
        """After an error: let this rank's writes end (files whole on disk). A single process also lets the
        completion end; with several, a peer may be gone and its collective would never return: the folder is
        complete only if that already happened, else it stays `.tmp`."""
        if self._pending is not None:
            written, completed = self._pending
            self._pending = None
            try:
                (written if _distributed() else completed).result()
            except BaseException:  # the error being raised already says what went wrong
                pass


def _complete_when_written(written: Future, save: _Save) -> Future:
    """The future of `save`'s completion, done by a thread of its own once `written` (its shards) is done."""
    completed: Future = Future()

    def complete() -> None:
        try:
            try:
                written.result()
            except BaseException as e:
                save.failed(e)
            completed.set_result(save.complete())
        except BaseException as e:
            completed.set_exception(e)

    # a daemon: a completion stuck in a collective of ranks that died never holds the process at exit
    threading.Thread(target=complete, name=f"complete-{save.final.name}", daemon=True).start()
    return completed


class _PinnedStaging:
    """CPU copies of the tensors of a state (nested dicts down to tensors, as `split_state` leaves them) in
    buffers kept from one save to the next (pinned for CUDA tensors: the copy runs at the link's speed, and
    allocating ~13 GB of pinned memory anew, as a fresh torch stager does, cost about 5 s per save of
    tiny_LLaMA_1b on an H100). DTensors keep their sharding metadata around a CPU copy of the local shard."""

    def __init__(self) -> None:
        self._buffers: dict[tuple, torch.Tensor] = {}

    def copy(self, state: dict[str, Any]) -> dict[str, Any]:
        staged = self._copy(state, ())
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the copies are whole before the writer thread reads them
        return staged

    def _copy(self, obj: Any, key: tuple) -> Any:
        if isinstance(obj, dict):
            return {k: self._copy(v, key + (k,)) for k, v in obj.items()}
        if isinstance(obj, DTensor):
            return DTensor.from_local(
                self._copy(obj.to_local(), key),
                obj.device_mesh,
                obj.placements,
                run_check=False,
                shape=obj.shape,
                stride=obj.stride(),
            )
        buffer = self._buffers.get(key)
        if buffer is None or buffer.shape != obj.shape or buffer.dtype != obj.dtype:
            buffer = torch.empty(obj.shape, dtype=obj.dtype, device="cpu", pin_memory=obj.is_cuda)
            self._buffers[key] = buffer
        return buffer.copy_(obj.detach(), non_blocking=obj.is_cuda)


class _AlreadyStaged:
    """The stager handed to `dcp.async_save` for a state already copied by `_PinnedStaging`: nothing left
    to copy, nothing to close (some torch versions close the stager they are given after each save)."""

    _synchronize_after_execute = False
    should_synchronize_after_execute = False

    def stage(self, state_dict):
        return state_dict

    def synchronize_staging(self) -> None:
        pass

    def close(self) -> None:
        pass


# --- non-tensor values ------------------------------------------------------------------------------
# A state's values other than tensors (the optimizer's param_groups: rates, betas, flags, names) are kept
# out of DCP, which would pickle them, and written as JSON. JSON has no tuple and only string keys: those
# are written as one-key objects tagged with a name no plain value of ours uses alone.
_TUPLE, _ITEMS = "__tuple__", "__items__"


def split_state(state: dict[str, Any]) -> tuple[dict[str, Any], list]:
    """(tensors, values) of a model/optimizer state: the nested dicts down to every tensor, for DCP; and every
    part of the state that holds no tensor, as `[path, encoded value]` pairs (path: the keys leading to
    it), for JSON. A value that is not JSON-like (None, bool, int, float, str, list, tuple, dict) is refused,
    naming its path, as is a list or tuple that holds tensors (DCP would pickle its other items)."""
    tensors: dict[str, Any] = {}
    values: list = []

    def walk(obj: dict[str, Any], path: list[str], into: dict[str, Any]) -> None:
        for key, value in obj.items():
            here = [*path, key]
            if isinstance(value, torch.Tensor):
                into[key] = value
            elif not _holds_tensor(value):
                values.append([here, _encode(value, here)])
            elif isinstance(value, dict) and all(isinstance(k, str) for k in value):
                walk(value, here, into.setdefault(key, {}))
            else:
                raise TypeError(f"checkpoint state {'.'.join(map(str, here))}: tensors inside a {type(value).__name__}")

    walk(state, [], tensors)
    return tensors, values


def _holds_tensor(obj: Any) -> bool:
    if isinstance(obj, torch.Tensor):
        return True
    if isinstance(obj, dict):
        return any(_holds_tensor(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_holds_tensor(v) for v in obj)
    return False


def _encode(obj: Any, path: list[str]) -> Any:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, list):
        return [_encode(v, path) for v in obj]
    if isinstance(obj, tuple):
        return {_TUPLE: [_encode(v, path) for v in obj]}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not (len(obj) == 1 and next(iter(obj)) in (_TUPLE, _ITEMS)):
            return {k: _encode(v, path) for k, v in obj.items()}
        return {_ITEMS: [[_encode(k, path), _encode(v, path)] for k, v in obj.items()]}
    raise TypeError(
        f"checkpoint state {'.'.join(map(str, path))}: a {type(obj).__name__} is neither a tensor nor a JSON-like "
        f"value (None, bool, int, float, str, list, tuple, dict), so a checkpoint cannot hold it"
    )


def _decode(obj: Any) -> Any:
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    if isinstance(obj, dict):
        if len(obj) == 1 and _TUPLE in obj:
            return tuple(_decode(v) for v in obj[_TUPLE])
        if len(obj) == 1 and _ITEMS in obj:
            return {_decode(k): _decode(v) for k, v in obj[_ITEMS]}  # a tuple key comes back a tuple
        return {k: _decode(v) for k, v in obj.items()}
    return obj


def _restore_values(path: Path, state: dict[str, Any], wanted: list) -> None:
    """Put the values of `path` (a state_values.json) into `state` in place, at every path of `wanted` (the
    `split_state` values of `state`); one the file lacks is an error naming it."""
    try:
        saved = {tuple(p): _decode(v) for p, v in json.loads(path.read_text())["values"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: unreadable ({type(e).__name__}: {e})") from e
    for keys, _ in wanted:
        if tuple(keys) not in saved:
            raise ValueError(f"{path}: no value for {'.'.join(keys)}, which this model and optimizer have")
        parent = state
        for key in keys[:-1]:
            parent = parent[key]
        parent[keys[-1]] = saved[tuple(keys)]


def _plain_tensors(obj: Any) -> Any:
    """The state with tensor subclasses that wrap one plain tensor (float8 training's weights under FSDP2,
    and the optimizer states made alike) replaced by that tensor: checkpoints hold ordinary tensors only,
    loadable without the subclass's code."""
    if isinstance(obj, dict):
        return {k: _plain_tensors(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain_tensors(v) for v in obj]
    if isinstance(obj, DTensor):
        local = obj.to_local()
        plain = _plain_tensors(local)
        if plain is local:
            return obj
        return DTensor.from_local(
            plain, obj.device_mesh, obj.placements, run_check=False, shape=obj.shape, stride=obj.stride()
        )
    if (
        isinstance(obj, torch.Tensor)
        and type(obj) is not torch.Tensor
        and not isinstance(obj, nn.Parameter)
        and hasattr(obj, "__tensor_flatten__")
    ):
        inner, _ = obj.__tensor_flatten__()
        if len(inner) == 1:
            return getattr(obj, inner[0])
    return obj


def _model_options(model: torch.nn.Module) -> StateDictOptions:
    """A model with frozen parameters (LoRA) checkpoints only its trainable ones (the adapter): the frozen
    base is loaded again from its own files on resume."""
    frozen = any(not p.requires_grad for p in model.parameters())
    return StateDictOptions(ignore_frozen_params=frozen)


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """Load model (and optimizer) in place from a checkpoint folder written by `save_checkpoint`, on
    any number of ranks (DCP reshards); restore this rank's random state when the folder has one.
    Returns the train state."""
    path = Path(path)
    if not (path / ".metadata").is_file() or not (path / TRAIN_STATE).is_file():
        raise FileNotFoundError(
            f"{path} is not a complete training checkpoint (expected .metadata and {TRAIN_STATE} inside)"
        )
    metadata = read_dcp_metadata(path / ".metadata")  # refuses a crafted file with a clear error
    options = _model_options(model)
    state: dict[str, Any] = {"model": get_model_state_dict(model, options=options)}
    if optimizer is not None:
        state["optimizer"] = get_optimizer_state_dict(model, optimizer)
    if (path / STATE_VALUES).is_file():
        pickled = [k for k, md in metadata.state_dict_metadata.items() if isinstance(md, BytesStorageMetadata)]
        if pickled:
            raise UnsafeCheckpointError(
                f"{path / '.metadata'}: declares {pickled[0]!r} as pickled bytes, which a checkpoint with "
                f"{STATE_VALUES} never holds (its values are JSON); refusing to load it (a crafted or foreign file)"
            )
        tensors, values = split_state(state)
        load_dcp(tensors, path)  # fails on any key the checkpoint lacks
        _restore_values(path / STATE_VALUES, state, values)
    else:
        # written before state_values.json: the values are DCP byte items, read as plain data only
        load_dcp(state, path)
    set_model_state_dict(model, state["model"], options=StateDictOptions(strict=not options.ignore_frozen_params))
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, state["optimizer"])
    rng_file = path / "rng" / f"rank_{_rank()}.pt"
    if rng_file.is_file():
        restore_rng_state(load_torch_file(rng_file, what="random state"))
    return json.loads((path / TRAIN_STATE).read_text())


def resume_path(resume: str | None, checkpoint_root: Path) -> Path | None:
    """The checkpoint a run continues from: "auto" the newest whole one in `checkpoint_root` (None if there
    is none; refused when every one there is damaged: starting afresh would train over them), a path that
    folder; None starts afresh and refuses a `checkpoint_root` that holds checkpoints."""
    if resume is None:
        if list_checkpoints(checkpoint_root):
            raise FileExistsError(
                f"{checkpoint_root} already holds checkpoints; pass --resume auto to continue that run, or "
                f"choose another --out_dir"
            )
        return None
    if resume == "auto":
        found = newest_whole_checkpoint(checkpoint_root)
        if found is None and list_checkpoints(checkpoint_root):
            raise FileExistsError(
                f"--resume auto: no whole checkpoint in {checkpoint_root}, every one is damaged (each named in a "
                f"warning above); move them away to start afresh, or choose another --out_dir"
            )
        return found
    path = Path(resume)
    if not path.is_dir():
        raise FileNotFoundError(f"--resume {resume}: no such checkpoint folder")
    problem = damage(path)
    if problem:
        raise ValueError(f"--resume {resume}: the checkpoint is damaged ({problem})")
    return path


def check_resumable(saved: dict[str, Any], current: dict[str, Any], fixed: Sequence[str]) -> None:
    """Refuse to resume when one of the run-config options in `fixed` (those the model or the data
    stream depend on) changed since the checkpoint was written."""
    changed = [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in fixed if saved.get(k) != current.get(k)]
    if changed:
        raise ValueError(
            "cannot resume: options that fix the model or the data stream changed (" + "; ".join(changed) + ")"
        )


def read_train_state(path: Path) -> dict[str, Any]:
    """A checkpoint's train_state.json, cheaply, before any weights are read."""
    state_file = Path(path) / TRAIN_STATE
    try:
        return json.loads(state_file.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{state_file}: unreadable train state ({e})") from e


def check_model_config(path: Path, config) -> None:
    """Refuse to resume from `path` when its saved model config differs in content from `config` (a
    config file edited in place included), before any weights are read."""
    from lit_gpt.config import RUNTIME_FIELDS, Config

    saved = Config.from_file(Path(path) / "model_config.yaml").to_dict()
    current = config.to_dict()
    changed = [
        f"{k}: {saved.get(k)!r} -> {current.get(k)!r}"
        for k in sorted(set(saved) | set(current))
        if k not in RUNTIME_FIELDS and saved.get(k) != current.get(k)
    ]
    if changed:
        raise ValueError(
            f"cannot resume from {path}: the model config differs from the checkpoint's ("
            + "; ".join(changed)
            + "); resume with the same model or start a new --out_dir"
        )


def remove_stale_temporaries(checkpoint_root: Path) -> None:
    """Drop half-written `*.tmp` checkpoint folders of an earlier, interrupted run (rank 0 only)."""
    if _rank() == 0 and checkpoint_root.is_dir():
        for p in checkpoint_root.glob("step-*.tmp"):
            shutil.rmtree(p, ignore_errors=True)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


# --- completeness -----------------------------------------------------------------------------------
FILES_RECORD = "files.json"


def _sha256_of_files(paths: list[Path]) -> list[str]:
    """SHA-256 of each file, several files at a time (hashlib lets go of the GIL while it hashes; one core
    hashes a few hundred MB/s to about 2 GB/s: RELIABILITY.md, "Checksums")."""
    if not paths:
        return []
    with ThreadPoolExecutor(max_workers=min(len(paths), os.cpu_count() or 1, 8)) as pool:
        return list(pool.map(file_sha256, paths))


def write_completeness_record(folder: Path) -> None:
    """`files.json`: every file of the checkpoint folder with its size and SHA-256."""
    paths = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != FILES_RECORD]
    files = {
        p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": digest}
        for p, digest in zip(paths, _sha256_of_files(paths))
    }
    _write_json(folder / FILES_RECORD, {"files": files})


def damage(folder: Path) -> str | None:
    """What is wrong with a checkpoint folder (the first damaged file and how), or None if it is whole.
    A record written before every file had a checksum (files of 1 MiB and more had none) checks those
    files by size only; a folder from before completeness records is taken as whole when its train state
    parses."""
    folder = Path(folder)
    record_path = folder / FILES_RECORD
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text())["files"]
            expected = {name: (int(entry["size"]), entry.get("sha256")) for name, entry in record.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return f"{record_path}: unreadable ({e})"
        for name, (size, _) in expected.items():
            p = folder / name
            if not p.is_file():
                return f"{p}: missing"
            if p.stat().st_size != size:
                return f"{p}: {p.stat().st_size} bytes, {size} when saved"
        hashed = [name for name, (_, digest) in expected.items() if digest is not None]
        for name, digest in zip(hashed, _sha256_of_files([folder / name for name in hashed])):
            if digest != expected[name][1]:
                return f"{folder / name}: contents changed since it was saved (its SHA-256 checksum differs)"
        return None
    try:
        json.loads((folder / TRAIN_STATE).read_text())
    except (OSError, ValueError) as e:
        return f"{folder / TRAIN_STATE}: unreadable ({e})"
    return None


def newest_whole_checkpoint(checkpoint_root: Path) -> Path | None:
    """The newest checkpoint that matches its completeness record; each damaged newer one is named in a warning."""
    for step, path in reversed(list_checkpoints(checkpoint_root)):
        problem = damage(path)
        if problem is None:
            return path
        warnings.warn(f"skipping damaged checkpoint {path}: {problem}")
    return None


def find_checkpoint(path: Path | None, default_run: Path | None = None, hint: str = "") -> Path:
    """`path`, or its newest whole checkpoint when it is a run folder (it has `checkpoints/`); without
    `path`, the newest of `default_run`. `hint` ends the error when `default_run` has none."""
    if path is None and default_run is None:
        raise ValueError("no checkpoint given")
    root = Path(default_run if path is None else path)
    if path is None or (root / "checkpoints").is_dir():
        found = newest_whole_checkpoint(root / "checkpoints")
        if found is None:
            raise FileNotFoundError(
                f"{root / 'checkpoints'} holds no complete checkpoint" + (hint if path is None else "")
            )
        return found
    if not root.exists():
        raise FileNotFoundError(f"checkpoint {root} not found")
    return root
