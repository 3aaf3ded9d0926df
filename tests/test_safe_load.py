"""Checkpoint files are untrusted input: a crafted pickle in a DCP `.metadata`, a random-state file or a
weight file is refused with an error naming the file, and none of its code runs."""

from __future__ import annotations

import pickle
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from model_helpers import random_model, tiny_config

from lit_gpt.checkpoint import load_hf_checkpoint, load_lit_checkpoint, save_lit_checkpoint
from lit_gpt.safe_load import UnsafeCheckpointError, load_torch_file, read_dcp_metadata
from lit_gpt.training.checkpointing import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from lit_gpt.training.trainer import make_optimizer


class CreatesMarker:
    """Unpickling this calls `open(marker, "w")`: the file exists afterwards iff the pickle's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.fixture
def training_checkpoint(tmp_path) -> tuple:
    model = random_model(tiny_config())
    optimizer = make_optimizer(model, 1e-3, 0.1, (0.9, 0.95))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # DCP: "assuming the intent is to save in a single process"
        folder = save_checkpoint(tmp_path / "checkpoints", 3, model, optimizer, {"step": 3}, {})
    model.config.save(folder / "model_config.yaml")
    return folder, model, optimizer


def test_whole_checkpoints_still_load(training_checkpoint):
    folder, model, optimizer = training_checkpoint
    assert read_dcp_metadata(folder / ".metadata").state_dict_metadata
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert load_checkpoint(folder, model, optimizer)["step"] == 3
        state_dict, _ = load_lit_checkpoint(folder)
    torch.testing.assert_close(state_dict, model.state_dict())


def test_crafted_dcp_metadata_runs_nothing(tmp_path, training_checkpoint):
    folder, model, optimizer = training_checkpoint
    marker = tmp_path / "pwned"
    (folder / ".metadata").write_bytes(pickle.dumps(CreatesMarker(marker)))
    with pytest.raises(UnsafeCheckpointError, match=r"\.metadata: refers to .*open"):
        load_checkpoint(folder, model, optimizer)  # --resume
    with pytest.raises(UnsafeCheckpointError, match=r"\.metadata"):
        load_lit_checkpoint(folder)  # --initial_checkpoint, converters, generate, finetune --checkpoint
    assert not marker.exists()


def test_damaged_dcp_metadata_names_the_file(training_checkpoint):
    folder, _, _ = training_checkpoint
    (folder / ".metadata").write_bytes((folder / ".metadata").read_bytes()[:40])
    with pytest.raises(ValueError, match=r"\.metadata: not a readable checkpoint metadata file"):
        load_lit_checkpoint(folder)


def test_crafted_rng_file_runs_nothing(tmp_path, training_checkpoint):
    folder, model, optimizer = training_checkpoint
    marker = tmp_path / "pwned"
    torch.save({"python": CreatesMarker(marker)}, folder / "rng" / "rank_0.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"rank_0\.pt: the random state holds more than tensors"):
        load_checkpoint(folder, model, optimizer)
    assert not marker.exists()


def test_random_states_round_trip_through_weights_only(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in NumPy's state
    torch.save(capture_rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.standard_normal(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng_state(load_torch_file(tmp_path / "rng.pt"))
    got = (random.random(), np.random.standard_normal(), torch.rand(3))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_crafted_weight_files_run_nothing(tmp_path, zipped):
    model = random_model(tiny_config())
    marker = tmp_path / "pwned"
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(
        '{"model_type": "llama", "hidden_size": 32, "num_attention_heads": 4, '
        '"num_key_value_heads": 2, "intermediate_size": 88, "num_hidden_layers": 2, '
        '"vocab_size": 128}'
    )
    torch.save({"w": CreatesMarker(marker)}, hf / "pytorch_model.bin", _use_new_zipfile_serialization=zipped)
    with pytest.raises(UnsafeCheckpointError, match=r"pytorch_model\.bin: the weights file holds more than tensors"):
        load_hf_checkpoint(hf)
    lit = tmp_path / "lit"
    save_lit_checkpoint(lit, model.state_dict(), model.config)
    torch.save({"model": CreatesMarker(marker)}, lit / "lit_model.pth", _use_new_zipfile_serialization=zipped)
    with pytest.raises(UnsafeCheckpointError, match=r"lit_model\.pth"):
        load_lit_checkpoint(lit)
    assert not marker.exists()


def test_legacy_format_weights_load_and_damage_is_named(tmp_path):
    model = random_model(tiny_config())
    lit = tmp_path / "lit"
    save_lit_checkpoint(lit, model.state_dict(), model.config)
    torch.save(model.state_dict(), lit / "lit_model.pth", _use_new_zipfile_serialization=False)
    state_dict, _ = load_lit_checkpoint(lit)  # the old, non-zip format cannot be memory-mapped
    torch.testing.assert_close(state_dict, model.state_dict())
    (lit / "lit_model.pth").write_bytes((lit / "lit_model.pth").read_bytes()[:100])
    with pytest.raises(ValueError, match=r"lit_model\.pth: the weights file cannot be read"):
        load_lit_checkpoint(lit)
