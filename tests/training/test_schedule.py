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
    assert s(10) == pytest.approx(4e-4)
    assert s(60) == pytest.approx((4e-4 + 4e-5) / 2)  # half way through the cosine
    assert s(110) == pytest.approx(4e-5)  # min lr reached at max step
    assert s(500) == pytest.approx(4e-5)
    values = [s(i) for i in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert not math.isclose(s(100), s(10))


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
    assert s(80) == pytest.approx(4e-4)  # the decay starts from lr ...
    assert s(90) == pytest.approx(4e-5 + quarter * (4e-4 - 4e-5))  # ... a quarter through it ...
    assert s(120) == pytest.approx(4e-5) and s(1000) == pytest.approx(4e-5)  # ... and ends at min_lr
    values = [s(i) for i in range(80, 121)]
    assert all(a > b for a, b in zip(values, values[1:]))


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
