import math

import pytest

from lit_gpt.training.schedule import LRSchedule, plan_batches


def test_accumulation_is_derived_from_the_global_batch():
    plan = plan_batches(micro_batch_size=8, world_size=16, block_size=2048, global_batch_size=1024)
    assert plan.grad_accum_steps == 8
    assert plan.tokens_per_step == 1024 * 2048
    # the same global batch on fewer devices only changes the accumulation
    assert plan_batches(8, 2, 2048, global_batch_size=1024).grad_accum_steps == 64
    assert plan_batches(4, 1, 16, global_batch_tokens=64 * 16).grad_accum_steps == 16


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(micro_batch_size=3, world_size=2, block_size=8, global_batch_size=16), "cannot be split"),
        (dict(micro_batch_size=2, world_size=1, block_size=8, global_batch_tokens=20), "not a multiple"),
        (dict(micro_batch_size=2, world_size=1, block_size=8), "exactly one"),
        (
            dict(micro_batch_size=2, world_size=1, block_size=8, global_batch_size=4, global_batch_tokens=32),
            "exactly one",
        ),
    ],
)
def test_impossible_splits_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_batches(**kwargs)


def test_warmup_then_cosine_to_min_lr_by_optimizer_step():
    s = LRSchedule(lr=4e-4, min_lr=4e-5, warmup_steps=10, max_steps=110)
    assert s(0) == pytest.approx(4e-5)  # first update already moves
    assert s(4) == pytest.approx(4e-4 * 5 / 10)
    assert s(9) == pytest.approx(4e-4)  # warmup ends at the peak
    assert s(10) < 4e-4  # the decay's first step
    assert s(59) == pytest.approx((4e-4 + 4e-5) / 2)  # half way through the cosine's 100 steps
    assert s(109) == pytest.approx(4e-5)  # the last step, max_steps - 1, trains at min_lr
    assert s(500) == pytest.approx(4e-5)
    values = [s(i) for i in range(9, 111)]
    assert all(a > b for a, b in zip(values, values[1:-1]))


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt"])
@pytest.mark.parametrize("decay_steps", [1, 2, 5])
def test_the_last_step_of_a_decay_trains_at_min_lr(shape, decay_steps):
    """An annealing branch of 5 steps logged 3.9e-4 at its last step, not its min_lr of 2e-4: step i of the
    decay was i / n of the way, so min_lr fell on step max_steps, which is never taken."""
    s = LRSchedule(2e-3, 2e-4, 20, 100 + decay_steps, kind="wsd", decay_steps=decay_steps, decay_shape=shape)
    assert s(99) == 2e-3  # the plateau up to the decay
    assert s(100 + decay_steps - 1) == pytest.approx(2e-4)
    decay = [s(step) for step in range(99, 100 + decay_steps)]
    assert all(a > b for a, b in zip(decay, decay[1:]))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lr=4e-4, min_lr=4e-4, warmup_steps=1, max_steps=10),  # TinyLlama issue 27: never decays
        dict(lr=4e-4, min_lr=5e-4, warmup_steps=1, max_steps=10),
        dict(lr=4e-4, min_lr=0, warmup_steps=10, max_steps=10),
    ],
)
def test_bad_schedules_are_refused(kwargs):
    with pytest.raises(ValueError):
        LRSchedule(**kwargs)


@pytest.mark.parametrize(
    "shape, quarter",
    [
        ("linear", 0.75),
        ("cosine", 0.5 * (1 + math.cos(math.pi / 4))),
        ("1-sqrt", 0.5),
    ],
)
def test_warmup_stable_decay_by_shape(shape, quarter):
    """10 warmup steps, plateau to step 80, then the decay over the last 40 of 120 steps."""
    s = LRSchedule(lr=4e-4, min_lr=4e-5, warmup_steps=10, max_steps=120, kind="wsd", decay_steps=40, decay_shape=shape)
    assert s.decay_start == 80
    assert s(9) == pytest.approx(4e-4)  # warmup end
    assert s(10) == s(50) == s(79) == 4e-4  # plateau: exactly lr
    assert s(89) == pytest.approx(4e-5 + quarter * (4e-4 - 4e-5))  # a quarter through the decay ...
    assert s(119) == pytest.approx(4e-5) and s(1000) == pytest.approx(4e-5)  # ... which ends at min_lr
    values = [s(i) for i in range(79, 121)]
    assert all(a > b for a, b in zip(values, values[1:-1]))


def test_constant_schedule_and_decay_fraction():
    from types import SimpleNamespace

    from lit_gpt.training.schedule import schedule_from_options

    s = LRSchedule(lr=1e-3, min_lr=0, warmup_steps=4, max_steps=10, kind="constant")
    assert s(1) == pytest.approx(5e-4) and s(3) == s(4) == s(9) == s(50) == 1e-3
    options = SimpleNamespace(
        lr=1e-3,
        min_lr=1e-4,
        warmup_steps=5,
        lr_schedule="wsd",
        decay_steps=None,
        decay_fraction=0.2,
        decay_shape="cosine",
    )
    wsd = schedule_from_options(options, 100)
    assert (wsd.kind, wsd.decay_steps, wsd.decay_shape, wsd.decay_start) == ("wsd", 20, "cosine", 80)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(lr_schedule="wsd"), "needs --decay_steps or --decay_fraction"),
        (dict(lr_schedule="wsd", decay_steps=95), "exceed max_steps"),
        (dict(lr_schedule="wsd", decay_steps=10, decay_fraction=0.1), "not both"),
        (dict(lr_schedule="wsd", decay_fraction=1.5), "decay_fraction"),
        (dict(lr_schedule="wsd", decay_steps=10, decay_shape="sqrt"), "decay_shape"),
        (dict(lr_schedule="cosine", decay_steps=10), "apply to --lr_schedule wsd"),
        (dict(lr_schedule="linear"), "not one of"),
    ],
)
def test_bad_wsd_options_fail_at_start_in_one_line(options, message):
    from types import SimpleNamespace

    from lit_gpt.training.option_checks import check_pretrain_options

    base = dict(
        data_dir=None,
        tokenizer_dir=None,
        initial_checkpoint=None,
        model_name="micro_LLaMA",
        model_config=None,
        micro_batch_size=2,
        log_interval=1,
        eval_batches=1,
        num_workers=0,
        eval_interval=0,
        save_interval=0,
        devices=1,
        num_nodes=1,
        global_batch_size=4,
        global_batch_tokens=None,
        max_tokens=None,
        max_steps=100,
        lr=1e-3,
        min_lr=1e-4,
        warmup_steps=10,
        decay_steps=None,
        decay_fraction=None,
        decay_shape="linear",
    )
    with pytest.raises(ValueError, match=message) as e:
        check_pretrain_options(SimpleNamespace(**{**base, **options}))
    assert "\n" not in str(e.value)


def _run_config(**schedule) -> dict:
    return {"lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 2, "max_steps": 10, "lr_schedule": "cosine", **schedule}


def test_what_a_schedule_change_on_resume_changes():
    from lit_gpt.training.continuation import check_schedule_change

    saved = _run_config()
    assert check_schedule_change(saved, dict(saved), 64, 5, allowed=False) is None
    assert check_schedule_change(saved, _run_config(max_tokens=640, max_steps=None), 64, 5, allowed=False) is None
    constant = _run_config(lr_schedule="constant")  # a constant rate made longer: the same rates
    assert check_schedule_change(constant, {**constant, "max_steps": 40}, 64, 5, allowed=False) is None
    with pytest.raises(ValueError, match=r"^cannot resume with another learning-rate schedule \(max_steps 10 -> 20: "):
        check_schedule_change(saved, _run_config(max_steps=20), 64, 5, allowed=False)
    line = check_schedule_change(saved, _run_config(max_steps=20, min_lr=0.0), 64, 5, allowed=True)
    before, after = LRSchedule(1e-3, 1e-4, 2, 10), LRSchedule(1e-3, 0.0, 2, 20)
    assert line == (
        f"max_steps 10 -> 20, min_lr 0.0001 -> 0.0: step 6 trains at lr {after(5):.3g} instead of {before(5):.3g}, "
        f"the schedule ends with 0 at step 20 instead of 0.0001 at step 10"
    )


def test_a_resume_with_another_max_steps_is_refused_unless_asked(
    tmp_path, prepared_sample, sample_tokenizer, model_config, capsys
):
    """PRETRAIN.md, "Resuming with another schedule": refused, naming what changes; with
    --allow_schedule_change the new schedule goes on from the resumed step."""
    from lit_gpt.cli.pretrain import pretrain_with_recipe as pretrain
    from lit_gpt.training.metrics import read_metrics
    from lit_gpt.training.pretrain_args import PretrainArgs

    args = dict(
        out_dir=tmp_path / "run",
        data_dir=prepared_sample,
        tokenizer_dir=sample_tokenizer,
        model_config=model_config,
        accelerator="cpu",
        global_batch_size=4,
        micro_batch_size=2,
        max_steps=3,
        lr=1e-3,
        min_lr=1e-4,
        warmup_steps=1,
        log_interval=1,
        eval_interval=0,
        val_prefix="",
        tensorboard=False,
        num_workers=0,
    )
    pretrain(PretrainArgs(**args))
    with pytest.raises(ValueError, match=r"max_steps 3 -> 6: step 4 trains at lr .* instead of 0.0001") as refusal:
        pretrain(PretrainArgs(**{**args, "max_steps": 6}))
    assert "--allow_schedule_change true" in str(refusal.value) and "\n" not in str(refusal.value)
    capsys.readouterr()
    pretrain(PretrainArgs(**{**args, "max_steps": 6, "allow_schedule_change": True}))
    assert "learning-rate schedule changed on resume: max_steps 3 -> 6: step 4 trains" in capsys.readouterr().out
    lr = dict(read_metrics(tmp_path / "run" / "metrics.csv")["lr"])
    first, extended = LRSchedule(1e-3, 1e-4, 1, 3), LRSchedule(1e-3, 1e-4, 1, 6)
    assert [lr[s] for s in (1, 2, 3)] == pytest.approx([first(0), first(1), 1e-4])  # the first run's end: min_lr
    assert [lr[s] for s in (4, 5, 6)] == pytest.approx([extended(3), extended(4), 1e-4])
