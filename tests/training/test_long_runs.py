"""Long runs: annealing branches from a checkpoint, a change of the data mix on resume, initial weights
that do not depend on the number of processes, asynchronous checkpoints."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lit_gpt.training.checkpointing import damage, list_checkpoints, read_train_state
from lit_gpt.training.metrics import read_metrics
from training.pretrain_helpers import ENV, LAUNCHER, losses, run

SERIAL = ("--num_workers", "0")


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def constant_run(tmp_path_factory, prepared_sample, sample_tokenizer, model_config) -> Path:
    """8 steps at a constant rate after the warmup, checkpoints at steps 4 and 8."""
    out = tmp_path_factory.mktemp("constant")
    run(
        out,
        prepared_sample,
        sample_tokenizer,
        model_config,
        *SERIAL,
        "--lr_schedule",
        "constant",
        "--max_steps",
        "8",
        "--save_interval",
        "4",
    )
    return out


def test_annealing_branch_equals_a_wsd_run_that_decays_at_k(
    tmp_path, constant_run, prepared_sample, sample_tokenizer, model_config
):
    wsd = tmp_path / "wsd"  # 12 steps, the last 4 a 1-sqrt decay: it switches to the decay at step 8
    run(
        wsd,
        prepared_sample,
        sample_tokenizer,
        model_config,
        *SERIAL,
        "--lr_schedule",
        "wsd",
        "--decay_steps",
        "4",
        "--decay_shape",
        "1-sqrt",
    )
    source = constant_run / "checkpoints" / "step-000000008"
    before = snapshot(constant_run)
    branch = tmp_path / "branch"
    # every other option is the original run's
    proc = subprocess.run(
        [
            sys.executable,
            str(LAUNCHER),
            "--",
            "--anneal_from",
            str(source),
            "--decay_steps",
            "4",
            "--decay_shape",
            "1-sqrt",
            "--out_dir",
            str(branch),
            "--tensorboard",
            "false",
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "annealing branch from" in proc.stdout and "at step 8" in proc.stdout
    expected, got = losses(wsd), losses(branch)
    assert sorted(got) == [9, 10, 11, 12]
    assert {s: expected[s] for s in got} == got  # bit for bit, step for step
    assert {s: losses(constant_run)[s] for s in range(1, 9)} == {s: expected[s] for s in range(1, 9)}
    lr = dict(read_metrics(branch / "metrics.csv")["lr"])
    assert lr == {s: v for s, v in read_metrics(wsd / "metrics.csv")["lr"] if s > 8}
    assert lr[12] < lr[10] < lr[9] < 3e-3  # the decay starts from the plateau ...
    assert lr[12] == pytest.approx(3e-4)  # ... and its last step trains at the min_lr of the original run
    assert [s for s, _ in list_checkpoints(branch / "checkpoints")] == [12]
    assert read_train_state(branch / "checkpoints" / "step-000000012")["config"]["anneal_from"] == str(source)
    assert snapshot(constant_run) == before and damage(source) is None  # the original run is untouched


def test_annealing_refuses_bad_branches(tmp_path, constant_run):
    from lit_gpt.training.continuation import anneal_options
    from lit_gpt.training.pretraining import PretrainArgs

    source = constant_run / "checkpoints" / "step-000000004"
    for options, message in (
        (dict(out_dir=constant_run), "original run's"),
        (dict(out_dir=tmp_path, decay_steps=None), "--decay_steps N"),
        (dict(out_dir=tmp_path, decay_steps=2, max_steps=9), "drop --max_steps"),
        (dict(out_dir=tmp_path, decay_steps=2, anneal_from=tmp_path / "none"), "no such checkpoint"),
    ):
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            anneal_options(PretrainArgs(**{"anneal_from": source, "decay_steps": 4, **options}))
    args, start = anneal_options(PretrainArgs(anneal_from=source, decay_steps=3, out_dir=tmp_path))
    assert start == source and (args.max_steps, args.lr_schedule, args.lr, args.warmup_steps) == (7, "wsd", 3e-3, 2)


def test_a_mix_change_on_resume_needs_the_option(
    tmp_path, constant_run, prepared_sample, sample_tokenizer, model_config
):
    from lit_gpt.cli.pretrain import pretrain_with_recipe as pretrain
    from lit_gpt.training.pretrain_args import PretrainArgs

    out = tmp_path / "resumed"
    shutil.copytree(constant_run, out)
    saved = read_train_state(out / "checkpoints" / "step-000000008")["data"]
    new_mix = {"train_starcoder": 0.5, "train_slimpajama": 0.5}
    args = dict(
        out_dir=out,
        data_dir=prepared_sample,
        tokenizer_dir=sample_tokenizer,
        model_config=model_config,
        accelerator="cpu",
        global_batch_size=8,
        micro_batch_size=2,
        max_steps=10,
        lr=3e-3,
        min_lr=3e-4,
        warmup_steps=2,
        lr_schedule="constant",
        eval_interval=0,
        val_prefix="",
        tensorboard=False,
        num_workers=0,
        train_sources=new_mix,
    )
    with pytest.raises(ValueError, match="allow_mix_change"):
        pretrain(PretrainArgs(**args))
    pretrain(PretrainArgs(**args, allow_mix_change=True))
    after = read_train_state(out / "checkpoints" / "step-000000010")["data"]
    assert after["weights"] == new_mix and after["g"] == saved["g"] + 2 * 8
    for prefix, n in saved["source_counts"].items():  # each source went on from its count
        assert after["source_counts"][prefix] >= n
    assert sum(after["source_counts"].values()) == after["g"]


def _initial_weights(tmp_path: Path, strategy: str, devices: int, seed: int = 42) -> dict:
    import torch

    out = tmp_path / f"{strategy}_{devices}_{seed}.pt"
    proc = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("initial_weights.py")),
            str(out),
            strategy,
            str(devices),
            str(seed),
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    return torch.load(out, weights_only=True)


def test_initial_weights_do_not_depend_on_processes_or_sharding(tmp_path):
    """The full state dict at step 0: one process unsharded and FSDP2 on two gloo processes (meta-device
    init; each rank draws every weight whole and keeps its shard), bit for bit (the meta-device init on
    one process: tests/training/test_parallel.py)."""
    import torch

    single = _initial_weights(tmp_path, "single", 1)
    assert "transformer.wte.weight" in single and single["transformer.wte.weight"].shape[0] % 2 == 0
    sharded = _initial_weights(tmp_path, "fsdp", 2)
    assert sharded.keys() == single.keys()
    for name, value in single.items():
        assert torch.equal(sharded[name], value), name


def test_sigkill_during_an_async_save_keeps_the_previous_checkpoint_and_resumes_exactly(
    tmp_path, reference, prepared_sample, sample_tokenizer, model_config
):
    """Checkpoints at steps 3 and 6 written asynchronously while training goes on; the process dies with the
    step-6 save in flight. Step 3 (itself written in the background) resumes bit for bit."""
    out = tmp_path / "async_crash"
    async_options = (*SERIAL, "--save_interval", "3", "--async_checkpoint", "true")
    run(
        out,
        prepared_sample,
        sample_tokenizer,
        model_config,
        *async_options,
        simulate=("--sigkill_on_async_save", 2),
        expect_rc=-9,
    )
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [3]
    assert damage(out / "checkpoints" / "step-000000003") is None
    assert max(losses(out)) >= 6  # training went on while step 3 was written
    proc = run(out, prepared_sample, sample_tokenizer, model_config, *async_options)
    assert "resumed from" in proc.stdout and "at step 3" in proc.stdout
    assert "while training goes on" in proc.stdout
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [3, 6, 9, 12]
    assert not list((out / "checkpoints").glob("*.tmp"))
    assert losses(out) == losses(reference)


def test_sigkill_after_an_async_save_completed_resumes_from_it(
    tmp_path, reference, prepared_sample, sample_tokenizer, model_config
):
    """Saves every 3 steps written asynchronously; SIGKILL in step 5, once the step-3 save has written its
    shards (and before the step-6 one starts). The save is complete by then, not left as step-3.tmp for the
    next save to complete (the next start deleted it and trained from step 0); the run resumes from it bit for
    bit."""
    out = tmp_path / "async_killed"
    async_options = (*SERIAL, "--save_interval", "3", "--async_checkpoint", "true")
    common = (prepared_sample, sample_tokenizer, model_config, *async_options)
    # 4 micro batches a step: the 18th is in step 5
    run(out, *common, simulate=("--sigkill_after_batches_once_saved", 18), expect_rc=-9)
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [3]
    assert not list((out / "checkpoints").glob("*.tmp"))
    assert damage(out / "checkpoints" / "step-000000003") is None
    proc = run(out, *common)
    assert "resumed from" in proc.stdout and "at step 3" in proc.stdout
    assert losses(out) == losses(reference)


def test_fsdp2_resume_from_async_checkpoints_is_exact(
    tmp_path, fsdp2_reference, prepared_sample, sample_tokenizer, model_config
):
    """Two gloo processes, asynchronous interval saves (steps 2 and 4), SIGTERM in step 5: the save then
    waits for the one in flight, writes step 5 and exits; the resume matches an uninterrupted run."""
    common = (prepared_sample, sample_tokenizer, model_config)
    fsdp = ("--strategy", "fsdp", *SERIAL, "--save_interval", "2", "--async_checkpoint", "true")
    out = tmp_path / "async"
    # 2 micro batches per rank and step: rank 0's 9th batch is in step 5
    proc = run(out, *common, *fsdp, devices=2, simulate=("--sigterm_after_batches", 9), expect_rc=75)
    assert "while training goes on" in proc.stdout
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [2, 4, 5]
    assert read_train_state(out / "checkpoints" / "step-000000004")["reason"] == "interval"
    run(out, *common, *fsdp, devices=2)
    assert losses(out) == losses(fsdp2_reference)


def test_async_saves_hold_the_state_of_their_step_and_reuse_their_buffers(tmp_path):
    """What an asynchronous save writes is the state when save() was called, even though training changes
    the weights while the shards are written; the second save copies into the first one's buffers (a
    fresh stager per save re-allocated them: about 5 s per save of tiny_LLaMA_1b on an H100)."""
    import torch

    from lit_gpt.config import Config
    from lit_gpt.model import GPT
    from lit_gpt.training.checkpointing import AsyncCheckpointer, list_checkpoints, load_checkpoint
    from lit_gpt.training.trainer import make_optimizer

    model = GPT(Config.from_name("micro_LLaMA"))
    optimizer = make_optimizer(model, 1e-3, 0.0, (0.9, 0.95))
    root = tmp_path / "checkpoints"
    writer = AsyncCheckpointer()
    expected = {}
    for step in (1, 2):
        with torch.no_grad():
            model.lm_head.weight.add_(1.0)
        expected[step] = model.lm_head.weight.detach().clone()
        writer.save(root, step, model, optimizer, {"step": step}, {})
        buffers = {k: b.data_ptr() for k, b in writer._staging._buffers.items()}
        if step == 1:
            first = buffers
        with torch.no_grad():  # training goes on while the shards are written
            model.lm_head.weight.mul_(-3.0)
    assert buffers == first and len(first) > 0
    writer.close()
    assert [s for s, _ in list_checkpoints(root)] == [1, 2]
    for step in (1, 2):
        restored = GPT(Config.from_name("micro_LLaMA"))
        load_checkpoint(root / f"step-{step:09d}", restored, None)
        assert torch.equal(restored.lm_head.weight, expected[step])
