"""Pretraining end to end on the CPU: exact resume through SIGTERM (with loader workers and with FSDP2
on two gloo processes), resharded resume, a crash while saving, the logged schedule, and bad input."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal

import pytest
import yaml
from eval_helpers import TASK

from lit_gpt.cli import STOPPED_AND_SAVED
from lit_gpt.training.checkpointing import list_checkpoints
from lit_gpt.training.metrics import read_metrics
from lit_gpt.training.schedule import LRSchedule
from training.pretrain_helpers import MAX_STEPS, interrupt_fabric_run, losses, run


def test_uninterrupted_run_logs_the_schedule_and_learns(reference):
    series = read_metrics(reference / "metrics.csv")
    schedule = LRSchedule(3e-3, 3e-4, 2, MAX_STEPS)
    assert [s for s, _ in series["loss"]] == list(range(1, MAX_STEPS + 1))
    for step, lr in series["lr"]:
        assert lr == pytest.approx(schedule(step - 1))
    assert series["lr"][-1][1] == pytest.approx(schedule(MAX_STEPS - 1))
    assert series["tokens"][-1][1] == MAX_STEPS * 8 * 32
    assert [s for s, _ in series["val_loss"]] == [6, 12]
    assert series["loss"][-1][1] < series["loss"][0][1] - 0.3
    state = json.loads((reference / "checkpoints" / "step-000000012" / "train_state.json").read_text())
    assert state["step"] == MAX_STEPS and state["reason"] == "end" and state["data"]["g"] == MAX_STEPS * 8


def test_sigterm_then_resume_is_exact_with_loader_workers(
    tmp_path, reference, prepared_sample, sample_tokenizer, model_config
):
    out = tmp_path / "interrupted"
    # preempted after 18 micro batches: inside step 5 (4 micro batches a step), so it saves at step 5
    proc = run(
        out,
        prepared_sample,
        sample_tokenizer,
        model_config,
        "--num_workers",
        "2",
        simulate=("--sigterm_after_batches", 18),
        expect_rc=STOPPED_AND_SAVED,
    )
    assert "stopped by SIGTERM" in proc.stdout + proc.stderr
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [5]
    assert max(losses(out)) == 5
    run(out, prepared_sample, sample_tokenizer, model_config, "--num_workers", "2")
    assert losses(out) == losses(reference)  # bit for bit, as printed with 9 significant digits


def test_sigterm_to_the_whole_process_group_saves_and_resumes_exactly(
    tmp_path, reference, prepared_sample, sample_tokenizer, model_config
):
    """SLURM and torchrun signal the whole group: the two loader workers must outlive it until the save."""
    out = tmp_path / "group"
    proc = run(
        out,
        prepared_sample,
        sample_tokenizer,
        model_config,
        "--num_workers",
        "2",
        simulate=("--sigterm_group_after_batches", 18),
        expect_rc=STOPPED_AND_SAVED,
    )
    assert "stopped by SIGTERM" in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [5]
    run(out, prepared_sample, sample_tokenizer, model_config, "--num_workers", "2")
    assert losses(out) == losses(reference)


def test_sigterm_to_a_fabric_run_launcher_saves(tmp_path, prepared_sample, sample_tokenizer, model_config):
    """`fabric run` of two processes with two loader workers each; SIGTERM to the launcher alone (torchrun
    passes it to each rank's whole process group)."""
    out = tmp_path / "fabric_run"
    text, _ = interrupt_fabric_run(out, prepared_sample, sample_tokenizer, model_config, signal.SIGTERM, num_workers=2)
    saved = list_checkpoints(out / "checkpoints")
    assert len(saved) == 1 and 2 <= saved[0][0] < 10000, text[-5000:]
    state = json.loads((saved[0][1] / "train_state.json").read_text())
    assert state["reason"] == "stopped by SIGTERM", text[-5000:]


def test_fsdp2_two_processes_resume_exactly_and_reshard_to_one(
    tmp_path, fsdp2_reference, prepared_sample, sample_tokenizer, model_config
):
    common = dict(data=prepared_sample, tokenizer=sample_tokenizer, model_config=model_config)
    fsdp = ("--strategy", "fsdp", "--num_workers", "0")
    ref = fsdp2_reference
    out = tmp_path / "fsdp_interrupted"
    # 2 micro batches per rank and step: rank 0's 7th batch is in step 4
    run(out, *common.values(), *fsdp, devices=2, simulate=("--sigterm_after_batches", 7), expect_rc=STOPPED_AND_SAVED)
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [4]
    resharded = tmp_path / "fsdp_to_single"
    shutil.copytree(out, resharded)
    run(out, *common.values(), *fsdp, devices=2)
    assert losses(out) == losses(ref)
    # the same checkpoint continues on one process (no sharding) with the same global batch
    run(resharded, *common.values(), "--num_workers", "0", devices=1)
    expected, got = losses(ref), losses(resharded)
    assert sorted(got) == sorted(expected)
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=2e-5), step


def test_sigkill_while_saving_keeps_the_previous_checkpoint(
    tmp_path, reference, prepared_sample, sample_tokenizer, model_config
):
    out = tmp_path / "crash"
    run(
        out,
        prepared_sample,
        sample_tokenizer,
        model_config,
        "--save_interval",
        "3",
        "--num_workers",
        "0",
        simulate=("--sigkill_on_save", 2),
        expect_rc=-9,
    )
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [3]
    assert (out / "checkpoints" / "step-000000006.tmp").is_dir()  # the half-written one
    proc = run(out, prepared_sample, sample_tokenizer, model_config, "--save_interval", "3", "--num_workers", "0")
    assert "resumed from" in proc.stdout and "at step 3" in proc.stdout
    assert not list((out / "checkpoints").glob("*.tmp"))
    assert losses(out) == losses(reference)


def _pretrain_in_process(tmp_path, **overrides):
    from lit_gpt.cli.pretrain import pretrain_with_recipe as pretrain
    from lit_gpt.training.pretrain_args import PretrainArgs

    args = dict(
        out_dir=tmp_path / "out",
        accelerator="cpu",
        global_batch_size=8,
        micro_batch_size=2,
        max_steps=2,
        warmup_steps=1,
        eval_interval=0,
        eval_batches=2,
        val_prefix="",
        tensorboard=False,
        num_workers=0,
    )
    return pretrain(PretrainArgs(**{**args, **overrides}))


def test_bad_input_stops_before_training(tmp_path, prepared_sample, sample_tokenizer, model_config):
    common = dict(tokenizer_dir=sample_tokenizer, model_config=model_config)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        _pretrain_in_process(tmp_path, data_dir=tmp_path / "nowhere", **common)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="train_slimpajama"):
        _pretrain_in_process(tmp_path, data_dir=empty, **common)
    with pytest.raises(ValueError, match="cannot be split"):
        _pretrain_in_process(tmp_path, data_dir=prepared_sample, micro_batch_size=3, **common)
    other = tmp_path / "other_tokenizer"
    shutil.copytree(sample_tokenizer, other)
    (other / "tokenizer.model").write_bytes((other / "tokenizer.model").read_bytes()[:-1] + b"\x01")
    with pytest.raises(ValueError, match="tokenizer"):
        _pretrain_in_process(tmp_path, data_dir=prepared_sample, tokenizer_dir=other, model_config=model_config)
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_document_mask_option_reaches_the_model(tmp_path, prepared_sample, sample_tokenizer, model_config):
    """--document_mask takes the BOS id from the tokenizer into the saved model config (the model's
    use of it: tests/test_model.py)."""
    from lit_gpt.config import Config
    from lit_gpt.tokenizer import Tokenizer

    common = dict(
        data_dir=prepared_sample,
        tokenizer_dir=sample_tokenizer,
        model_config=model_config,
        max_steps=1,
        warmup_steps=0,
        log_interval=1,
    )
    _pretrain_in_process(tmp_path / "masked", document_mask=True, **common)
    config = Config.from_file(tmp_path / "masked" / "out" / "model_config.yaml")
    assert config.document_mask and config.bos_id == Tokenizer(sample_tokenizer).bos_id
    assert math.isfinite(losses(tmp_path / "masked" / "out")[1])


def test_periodic_lm_eval_tasks_are_logged(tmp_path, prepared_sample, sample_tokenizer, model_config, task_dir):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    _pretrain_in_process(
        tmp_path,
        data_dir=prepared_sample,
        tokenizer_dir=sample_tokenizer,
        model_config=model_config,
        max_steps=4,
        eval_tasks=TASK,
        eval_tasks_interval=2,
        eval_tasks_include_path=str(task_dir),
    )
    series = read_metrics(tmp_path / "out" / "metrics.csv")
    assert [s for s, _ in series[f"lm_eval/{TASK}/acc"]] == [2, 4]
    assert all(0 <= v <= 1 for _, v in series[f"lm_eval/{TASK}/acc_norm"])


def test_continued_pretraining_starts_from_given_weights(tmp_path, reference, prepared_sample, sample_tokenizer):
    """--initial_checkpoint takes the weights of a training checkpoint or of a Hugging Face folder, with
    a fresh optimizer and schedule: step 1 of the new run already has the trained model's loss."""
    from lit_gpt.checkpoint import load_lit_checkpoint, save_hf_checkpoint

    trained = reference / "checkpoints" / "step-000000012"
    hf = tmp_path / "hf"
    save_hf_checkpoint(hf, *load_lit_checkpoint(trained), tokenizer_dir=sample_tokenizer)
    first_reference_loss = losses(reference)[1]
    for name, source in (("from_lit", trained), ("from_hf", hf)):
        out = tmp_path / name
        state = _pretrain_in_process(
            out,
            data_dir=prepared_sample,
            tokenizer_dir=sample_tokenizer,
            initial_checkpoint=source,
            max_steps=2,
            log_interval=1,
        )
        assert state["step"] == 2
        assert losses(out / "out")[1] < first_reference_loss - 0.3, name


def test_the_demo_defaults_prepare_the_sample_and_train(tmp_path):
    """`python pretrain/tinyllama.py` with no data flags: sample tokenizer, shards, demo model (shortened)."""
    from lit_gpt.cli.pretrain import parse_args
    from lit_gpt.cli.pretrain import pretrain_with_recipe as pretrain

    out = tmp_path / "demo"
    args = parse_args(
        [
            "--out_dir",
            str(out),
            "--accelerator",
            "cpu",
            "--max_steps",
            "3",
            "--warmup_steps",
            "1",
            "--log_interval",
            "1",
            "--eval_interval",
            "3",
            "--eval_batches",
            "1",
            "--tensorboard",
            "false",
        ]
    )
    state = pretrain(args)
    assert state["step"] == 3
    assert (out / "tokenizer" / "tokenizer.model").is_file()
    for prefix in ("train_slimpajama", "validation_slimpajama", "train_starcoder"):
        assert (out / "data" / f"{prefix}.manifest.json").is_file()
    config = yaml.safe_load((out / "model_config.yaml").read_text())
    assert config["name"] == "demo_LLaMA_5M" and config["vocab_size"] == 4096
    assert [s for s, _ in read_metrics(out / "metrics.csv")["val_loss"]] == [3]
