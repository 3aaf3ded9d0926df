"""A checkpoint is whole only if it matches its completeness record: `--resume auto` skips a damaged newest
one (truncated shard, train state or random state) with a warning naming it and takes the previous one."""

from __future__ import annotations

import json
import warnings

import pytest
from model_helpers import random_model, tiny_config

from lit_gpt.training.checkpointing import FILES_RECORD, damage, load_checkpoint, resume_path, save_checkpoint
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
