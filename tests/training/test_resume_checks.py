"""Resume compares the model config by content, before any weights are read."""

from __future__ import annotations

import pytest
import yaml

from training.pretrain_helpers import short_run


def test_a_changed_model_config_is_refused_before_loading_weights(
    tmp_path, prepared_sample, sample_tokenizer, model_config
):
    config_file = tmp_path / "model.yaml"
    config_file.write_text(model_config.read_text())
    out = tmp_path / "run"
    short_run(out, prepared_sample, sample_tokenizer, config_file)
    # the same file edited in place: only its content tells
    edited = {**yaml.safe_load(config_file.read_text()), "rope_base": 20000}
    config_file.write_text(yaml.safe_dump(edited))
    with pytest.raises(
        ValueError,
        match=r"cannot resume from .*step-000000001: the model config differs .*rope_base: "
        r"10000.* -> 20000",
    ):
        short_run(out, prepared_sample, sample_tokenizer, config_file)
    # another model altogether: our message, not a missing key of the weights
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**edited, "rope_base": 10000, "n_layer": 3}))
    with pytest.raises(ValueError, match=r"cannot resume .*n_layer: 2 -> 3"):
        short_run(out, prepared_sample, sample_tokenizer, other)


def test_the_non_finite_stop_names_the_checkpoint_before_the_divergence(
    tmp_path, monkeypatch, prepared_sample, sample_tokenizer, model_config
):
    import torch

    import lit_gpt.training.trainer as trainer

    real, calls = trainer.grad_norm_and_clip, []

    def diverging_from_step_3(model, max_norm):
        calls.append(1)
        norm = real(model, max_norm)
        return norm if len(calls) < 3 else torch.full_like(norm, float("nan"))

    monkeypatch.setattr(trainer, "grad_norm_and_clip", diverging_from_step_3)
    out = tmp_path / "run"
    with pytest.raises(
        RuntimeError,
        match=r"saved .*step-000000004 \(diverged: do not resume from it\).*--resume "
        r".*step-000000002 and a lower --lr",
    ):
        short_run(
            out,
            prepared_sample,
            sample_tokenizer,
            model_config,
            max_steps=10,
            save_interval=2,
            max_consecutive_nonfinite=2,
        )
