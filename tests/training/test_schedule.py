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


@pytest.mark.parametrize("kwargs, message", [
    (dict(micro_batch_size=3, world_size=2, block_size=8, global_batch_size=16), "cannot be split"),
    (dict(micro_batch_size=2, world_size=1, block_size=8, global_batch_tokens=20), "not a multiple"),
    (dict(micro_batch_size=2, world_size=1, block_size=8), "exactly one"),
    (dict(micro_batch_size=2, world_size=1, block_size=8, global_batch_size=4, global_batch_tokens=32), "exactly one"),
])
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


@pytest.mark.parametrize("kwargs", [
    dict(lr=4e-4, min_lr=4e-4, warmup_steps=1, max_steps=10),  # TinyLlama issue 27: never decays
    dict(lr=4e-4, min_lr=5e-4, warmup_steps=1, max_steps=10),
    dict(lr=4e-4, min_lr=0, warmup_steps=10, max_steps=10),
])
def test_bad_schedules_are_refused(kwargs):
    with pytest.raises(ValueError):
        LRSchedule(**kwargs)
