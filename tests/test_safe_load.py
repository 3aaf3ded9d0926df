"""Checkpoint files are untrusted input: a crafted pickle in a DCP `.metadata`, in a DCP byte item, a
random-state file or a weight file is refused with an error naming the file, and none of its code runs."""

from __future__ import annotations

import json
import math
import pickle
import random
import warnings

import numpy as np
import pytest
import torch
import torch.distributed.checkpoint as dcp
from checkpoint_helpers import CreatesMarker, declare_tensor_as_bytes, plant_pickled_value
from model_helpers import random_model, tiny_config
from torch.distributed.checkpoint.metadata import BytesStorageMetadata

from lit_gpt.checkpoint import load_hf_checkpoint, load_lit_checkpoint, save_lit_checkpoint
from lit_gpt.safe_load import UnsafeCheckpointError, load_torch_file, read_dcp_metadata
from lit_gpt.training.checkpointing import (
    STATE_VALUES,
    TRAIN_STATE,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    write_completeness_record,
)
from lit_gpt.training.trainer import make_optimizer


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


@pytest.mark.parametrize("keep_values_file", [False, True], ids=["older_layout", "beside_state_values"])
def test_a_pickled_byte_item_in_a_distcp_runs_nothing(tmp_path, training_checkpoint, keep_values_file):
    """torch writes every non-tensor value of a state as a pickle inside the .distcp and unpickles it with
    weights_only=False: a crafted one ran its code on every resume."""
    folder, model, optimizer = training_checkpoint
    marker = tmp_path / "pwned"
    key = plant_pickled_value(folder, marker, keep_values_file)
    expected = (
        rf"\.metadata: declares 'optimizer\.param_groups\.0\.\w+' as pickled bytes, which a checkpoint with "
        rf"{STATE_VALUES} never holds"
        if keep_values_file
        else rf"\.metadata: the item '{key}' holds more than plain data"
    )
    with pytest.raises(UnsafeCheckpointError, match=expected):
        load_checkpoint(folder, model, optimizer)
    assert not marker.exists()


@pytest.mark.parametrize("layout", ["current", "older"])
def test_a_weight_declared_as_bytes_runs_nothing(tmp_path, training_checkpoint, layout):
    """A `.metadata` of allowed classes only that declares a weight as a byte item: torch would unpickle the
    bytes it points at in the weight's place. Refused in a checkpoint of either layout (the older one holds
    byte items of its own: the param_groups)."""
    folder, model, optimizer = training_checkpoint
    marker = tmp_path / "pwned"
    if layout == "older":
        plant_pickled_value(folder, marker)
    key = declare_tensor_as_bytes(folder, marker)
    with pytest.raises(UnsafeCheckpointError, match=rf"\.metadata: .*'{key}'.* as pickled bytes"):
        load_checkpoint(folder, model, optimizer)  # --resume, LoRA resume, --anneal_from
    with pytest.raises(ValueError, match=rf"tensor '{key}' missing"):
        load_lit_checkpoint(folder)  # converters, generate: ask the metadata for tensors only
    assert not marker.exists()


def test_non_tensor_values_are_json_and_come_back_equal(tmp_path):
    """Optimizer param_groups with every kind of JSON-like value (a Muon-style group carries flags, names,
    None, nested lists), and SGD's momentum buffers: no pickle in the checkpoint, the same values after."""
    model = random_model(tiny_config())
    params = list(model.parameters())
    optimizer = torch.optim.SGD(
        [{"params": params[:3], "use_muon": True, "ns_steps": 5}, {"params": params[3:], "use_muon": False}],
        lr=0.1,
        momentum=0.9,
    )
    extras = {
        **{"betas": (0.9, 0.95), "name": "muon", "scale": None, "shape": [[1, 2], (3,)], "inf": math.inf, "z": -0.0},
        **{"by_id": {1: "a", (2, 3): "b"}, "tagged": {"__tuple__": [1]}},  # keys JSON has not, and our own tag
    }
    optimizer.param_groups[0].update(extras)
    model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    optimizer.step()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        folder = save_checkpoint(tmp_path / "checkpoints", 1, model, optimizer, {"step": 1}, {})
    stored = read_dcp_metadata(folder / ".metadata").state_dict_metadata
    assert not [k for k, md in stored.items() if isinstance(md, BytesStorageMetadata)]
    assert json.loads((folder / STATE_VALUES).read_text())  # plain JSON

    fresh = random_model(tiny_config(), seed=1)
    params = list(fresh.parameters())
    restored = torch.optim.SGD([{"params": params[:3]}, {"params": params[3:]}], lr=0.5, momentum=0.1)
    load_checkpoint(folder, fresh, restored)
    for ours, theirs in zip(optimizer.param_groups, restored.param_groups):
        assert {k: v for k, v in ours.items() if k != "params"} == {k: v for k, v in theirs.items() if k != "params"}
        assert all(type(ours[k]) is type(theirs[k]) for k in ours)  # tuples stay tuples
    assert math.copysign(1, restored.param_groups[0]["z"]) == -1
    assert restored.param_groups[0]["shape"] == [[1, 2], (3,)]
    for p, q in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(p, q)
        assert torch.equal(optimizer.state[p]["momentum_buffer"], restored.state[q]["momentum_buffer"])


def test_a_value_json_cannot_hold_is_refused_when_saving(tmp_path):
    model = random_model(tiny_config())
    optimizer = make_optimizer(model, 1e-3, 0.1, (0.9, 0.95))
    optimizer.param_groups[1]["schedule"] = object()
    with pytest.raises(TypeError, match=r"optimizer\.param_groups: a object is neither a tensor nor a JSON-like"):
        save_checkpoint(tmp_path / "checkpoints", 1, model, optimizer, {"step": 1}, {})


def test_an_older_checkpoint_with_pickled_values_loads_as_plain_data(tmp_path):
    """Checkpoints from before state_values.json hold param_groups as DCP byte items: they load (with
    weights_only=True), equal to what was saved."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    model = random_model(tiny_config())
    optimizer = make_optimizer(model, 1e-3, 0.1, (0.9, 0.95))
    model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    optimizer.step()
    folder = tmp_path / "step-000000001"
    state = {"model": get_model_state_dict(model), "optimizer": get_optimizer_state_dict(model, optimizer)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dcp.save(state, checkpoint_id=folder, no_dist=True)  # the layout of older checkpoints
    (folder / TRAIN_STATE).write_text(json.dumps({"step": 1}))
    write_completeness_record(folder)

    fresh = random_model(tiny_config(), seed=1)
    restored = make_optimizer(fresh, 5e-3, 0.0, (0.5, 0.5))
    assert load_checkpoint(folder, fresh, restored)["step"] == 1
    assert restored.param_groups[0]["betas"] == (0.9, 0.95) and restored.param_groups[0]["lr"] == 1e-3
    ours, theirs = optimizer.state_dict(), restored.state_dict()
    assert ours["param_groups"] == theirs["param_groups"]
    for i, s in ours["state"].items():
        assert all(torch.equal(s[k], theirs["state"][i][k]) for k in s)


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
