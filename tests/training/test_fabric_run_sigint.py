"""Ctrl-C (SIGINT) to a `fabric run` launcher: the ranks save one checkpoint, say so once and exit 75
without a traceback; the launcher's own traceback and exit code 1 come from torchrun (documented)."""

from __future__ import annotations

import json
import signal

from lit_gpt.training.checkpointing import list_checkpoints
from training.pretrain_helpers import interrupt_fabric_run


def test_sigint_to_a_fabric_run_launcher_saves_without_a_traceback_from_our_ranks(
    tmp_path, prepared_sample, sample_tokenizer, model_config
):
    out = tmp_path / "fabric_run"
    text, launcher = interrupt_fabric_run(
        out, prepared_sample, sample_tokenizer, model_config, signal.SIGINT, num_workers=1
    )
    saved = list_checkpoints(out / "checkpoints")
    assert len(saved) == 1, text[-5000:]
    state = json.loads((saved[0][1] / "train_state.json").read_text())
    assert state["reason"] == "stopped by SIGINT", text[-5000:]
    assert "stopped by SIGINT after saving; exit code 75" in text
    # The one traceback is the launcher's own: torchrun's agent turns the signal into a SignalException and
    # exits 1 (PRETRAIN.md, "Exit codes"); our ranks exit 75 without one.
    for traceback in text.split("Traceback (most recent call last)")[1:]:
        assert "SignalException" in traceback and "elastic" in traceback, text[-5000:]
        assert "lit_gpt" not in traceback and "tinyllama.py" not in traceback, text[-5000:]
    assert launcher.returncode != 0
