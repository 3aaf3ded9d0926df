"""A crafted checkpoint runs nothing on the pretraining resume paths (`--resume auto`, `--anneal_from`), and
a checkpoint changed in place is refused by them; fine-tuning's LoRA resume: tests/sft/test_lora.py."""

from __future__ import annotations

import shutil

import pytest
from checkpoint_helpers import declare_tensor_as_bytes, plant_pickled_value, tensor_location, zero_bytes

from lit_gpt.safe_load import UnsafeCheckpointError
from lit_gpt.training.checkpointing import list_checkpoints
from training.pretrain_helpers import short_run

CRAFTS = {"pickled_param_group": plant_pickled_value, "weight_declared_as_bytes": declare_tensor_as_bytes}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, prepared_sample, sample_tokenizer, model_config):
    """A run of one step at a constant rate (a branch decays from it), checkpointed at its end."""
    out = tmp_path_factory.mktemp("finished") / "run"
    short_run(out, prepared_sample, sample_tokenizer, model_config, lr_schedule="constant")
    return out


def resume(how, run, checkpoint, tmp_path, prepared_sample, sample_tokenizer, model_config):
    if how == "resume_auto":
        return short_run(run, prepared_sample, sample_tokenizer, model_config, lr_schedule="constant", max_steps=2)
    return short_run(
        tmp_path / "branch",
        prepared_sample,
        sample_tokenizer,
        model_config,
        anneal_from=checkpoint,
        decay_steps=1,
        max_steps=None,
    )


@pytest.mark.parametrize("how", ["resume_auto", "anneal_from"])
@pytest.mark.parametrize("craft", CRAFTS)
def test_a_crafted_checkpoint_runs_nothing(
    tmp_path, finished_run, prepared_sample, sample_tokenizer, model_config, how, craft
):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    checkpoint = list_checkpoints(run / "checkpoints")[-1][1]
    marker = tmp_path / "pwned"
    key = CRAFTS[craft](checkpoint, marker)
    with pytest.raises(UnsafeCheckpointError, match=rf"{checkpoint.name}/\.metadata: .*'{key}'"):
        resume(how, run, checkpoint, tmp_path, prepared_sample, sample_tokenizer, model_config)
    assert not marker.exists()


@pytest.mark.parametrize("how", ["resume_auto", "anneal_from"])
def test_a_weight_changed_in_place_is_refused(
    tmp_path, finished_run, prepared_sample, sample_tokenizer, model_config, how
):
    """4 KiB zeroed inside the embedding of the only checkpoint: `--resume auto` finds no whole one and says
    so, `--anneal_from` refuses it; neither trains on the changed weights."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    checkpoint = list_checkpoints(run / "checkpoints")[-1][1]
    shard, offset, length = tensor_location(checkpoint, "model.transformer.wte.weight")
    zero_bytes(shard, offset + length // 2, 4096)
    if how == "resume_auto":
        with pytest.warns(UserWarning, match=rf"skipping damaged checkpoint .*{shard.name}.*SHA-256"):
            with pytest.raises(FileExistsError, match="no whole checkpoint"):
                resume(how, run, checkpoint, tmp_path, prepared_sample, sample_tokenizer, model_config)
    else:
        with pytest.raises(ValueError, match=rf"--anneal_from .*the checkpoint is damaged .*{shard.name}.*SHA-256"):
            resume(how, run, checkpoint, tmp_path, prepared_sample, sample_tokenizer, model_config)
