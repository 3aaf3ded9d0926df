"""A checkpoint is whole only if it matches its completeness record: `--resume auto` skips a damaged newest
one (truncated shard, train state or random state, bytes changed in place in any file) with a warning naming
it and takes the previous one."""

from __future__ import annotations

import json
import warnings

import pytest
from checkpoint_helpers import tensor_location, zero_bytes
from model_helpers import random_model, tiny_config

from lit_gpt.training.checkpointing import (
    FILES_RECORD,
    AsyncCheckpointer,
    damage,
    load_checkpoint,
    resume_path,
    save_checkpoint,
)
from lit_gpt.training.trainer import make_optimizer


@pytest.fixture
def two_checkpoints(tmp_path):
    model = random_model(tiny_config())
    optimizer = make_optimizer(model, 1e-3, 0.1, (0.9, 0.95))
    root = tmp_path / "checkpoints"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # DCP: "assuming the intent is to save in a single process"
        paths = [save_checkpoint(root, step, model, optimizer, {"step": step}, {}) for step in (4, 8)]
    return root, paths, model, optimizer


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_whole_checkpoints_match_their_record(two_checkpoints):
    root, (older, newest), _, _ = two_checkpoints
    record = json.loads((newest / FILES_RECORD).read_text())["files"]
    assert "train_state.json" in record and "rng/rank_0.pt" in record and any(n.endswith(".distcp") for n in record)
    assert damage(newest) is None
    assert resume_path("auto", root) == newest


@pytest.mark.parametrize("victim", ["distcp", "train_state.json", "rng/rank_0.pt"])
def test_auto_resume_skips_a_truncated_newest_checkpoint(two_checkpoints, victim):
    root, (older, newest), model, optimizer = two_checkpoints
    target = next(newest.glob("*.distcp")) if victim == "distcp" else newest / victim
    truncate(target)
    with pytest.warns(UserWarning, match=rf"skipping damaged checkpoint .*step-000000008.*{target.name}"):
        assert resume_path("auto", root) == older
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert load_checkpoint(older, model, optimizer)["step"] == 4
    with pytest.raises(ValueError, match=rf"the checkpoint is damaged .*{target.name}"):
        resume_path(str(newest), root)  # a damaged one named explicitly is refused, not silently replaced


def test_a_changed_small_file_of_the_same_size_is_caught(two_checkpoints):
    _, (_, newest), _, _ = two_checkpoints
    state = newest / "train_state.json"
    state.write_text(state.read_text().replace("8", "9"))
    assert "checksum" in damage(newest)


@pytest.fixture
def two_big_checkpoints(tmp_path):
    """Checkpoints at steps 4 and 8 whose .distcp is a few MiB (a vocabulary of 4096)."""
    model = random_model(tiny_config(vocab_size=4096))
    optimizer = make_optimizer(model, 1e-3, 0.1, (0.9, 0.95))
    root = tmp_path / "checkpoints"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        paths = [save_checkpoint(root, step, model, optimizer, {"step": step}, {}) for step in (4, 8)]
    return root, paths, model, optimizer


@pytest.mark.parametrize("where", ["1 MiB in the middle of the .distcp", "4 KiB inside wte.weight"])
def test_bytes_zeroed_in_place_in_a_big_file_are_caught(two_big_checkpoints, where):
    """The same size, other contents: without a checksum of every file the first loaded and died in torch's
    own traceback, the second resumed silently with other weights."""
    root, (older, newest), model, optimizer = two_big_checkpoints
    if where.startswith("1 MiB"):
        target = next(newest.glob("*.distcp"))
        assert target.stat().st_size > 2 << 20
        zero_bytes(target, target.stat().st_size // 2 - (1 << 19), 1 << 20)
    else:
        target, offset, length = tensor_location(newest, "model.transformer.wte.weight")
        zero_bytes(target, offset + length // 2, 4096)
    with pytest.warns(UserWarning, match=rf"skipping damaged checkpoint .*step-000000008.*{target.name}.*SHA-256"):
        assert resume_path("auto", root) == older
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert load_checkpoint(older, model, optimizer)["step"] == 4
    with pytest.raises(ValueError, match=rf"the checkpoint is damaged .*{target.name}.*SHA-256"):
        resume_path(str(newest), root)


@pytest.mark.parametrize("writer", ["sync", "async"])
def test_every_file_of_a_checkpoint_has_a_checksum(tmp_path, writer):
    model = random_model(tiny_config(vocab_size=4096))
    optimizer = make_optimizer(model, 1e-3, 0.1, (0.9, 0.95))
    root = tmp_path / "checkpoints"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if writer == "sync":
            folder = save_checkpoint(root, 1, model, optimizer, {"step": 1}, {})
        else:
            async_writer = AsyncCheckpointer()
            folder = async_writer.save(root, 1, model, optimizer, {"step": 1}, {})
            async_writer.close()
    record = json.loads((folder / FILES_RECORD).read_text())["files"]
    assert max(entry["size"] for entry in record.values()) > 1 << 20
    assert sorted(record) == sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != FILES_RECORD
    )
    assert all(len(entry["sha256"]) == 64 for entry in record.values())
