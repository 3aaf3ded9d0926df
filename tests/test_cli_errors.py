"""A user error prints one line on whichever rank met it (with the rank when several run) and exits 2."""

import pytest

from lit_gpt.cli import USER_ERROR, run_training


def failing_job():
    raise FileNotFoundError("data/train_x_0000000001.bin: listed in data/train_x.manifest.json but missing")


@pytest.mark.parametrize("rank,world", [(0, 1), (1, 2), (3, 4)])
def test_the_rank_that_met_the_error_says_it(rank, world, monkeypatch, capsys):
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.delenv("LIT_GPT_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as stop:
        run_training(failing_job)
    assert stop.value.code == USER_ERROR
    (line,) = capsys.readouterr().err.splitlines()
    prefix = "error: " if world == 1 else f"error (rank {rank}): "
    assert line == prefix + "data/train_x_0000000001.bin: listed in data/train_x.manifest.json but missing"
