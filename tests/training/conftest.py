"""Uninterrupted reference runs that several test modules compare their interrupted, resumed or resharded
runs with: each is trained once per test session (a two-process launch costs about 14 s of CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lit_gpt.cli import STOPPED_AND_SAVED
from training.pretrain_helpers import run


@pytest.fixture(scope="session")
def reference(tmp_path_factory, prepared_sample, sample_tokenizer, model_config) -> Path:
    """One process with two loader workers (a run without workers logs the same losses, bit for bit: the
    tests that resume one compare with this)."""
    out = tmp_path_factory.mktemp("reference")
    run(out, prepared_sample, sample_tokenizer, model_config, "--num_workers", "2")
    return out


@pytest.fixture(scope="session")
def stopped_at_step_5(tmp_path_factory, prepared_sample, sample_tokenizer, model_config) -> Path:
    """One process, no loader workers, stopped by SIGTERM inside step 5 (its 18th micro batch of 4 a step),
    so holding the checkpoint of step 5. Copy it before resuming it."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    simulate = ("--sigterm_after_batches", 18)
    run(
        out,
        prepared_sample,
        sample_tokenizer,
        model_config,
        "--num_workers",
        "0",
        simulate=simulate,
        expect_rc=STOPPED_AND_SAVED,
    )
    return out


@pytest.fixture(scope="session")
def fsdp2_reference(tmp_path_factory, prepared_sample, sample_tokenizer, model_config) -> Path:
    """FSDP2 on two gloo processes, no loader workers."""
    out = tmp_path_factory.mktemp("fsdp2_reference")
    run(out, prepared_sample, sample_tokenizer, model_config, "--strategy", "fsdp", "--num_workers", "0", devices=2)
    return out
