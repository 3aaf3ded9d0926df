"""benchmarks/trainer_windows.py: the steady tokens/s of a run from the metrics.csv the trainer writes."""

from __future__ import annotations

import pytest
from data_helpers import load_benchmark

from lit_gpt.training.metrics import CSVMetricsLogger


def write_run(folder, windows: list[tuple[int, float]], tokens_per_step: int = 1000, compile_sec: float = 30.0):
    """A run logged every 4 steps: the first window takes `compile_sec`, then each at its tokens/s."""
    logger = CSVMetricsLogger(folder)
    tokens, seconds, step = 0, 0.0, 0
    for i, (steps, rate) in enumerate(windows):
        step += steps
        tokens += steps * tokens_per_step
        took = compile_sec if i == 0 else steps * tokens_per_step / rate
        seconds += took
        logger.log_metrics(
            {
                "tokens": tokens,
                "tokens_per_sec": steps * tokens_per_step / took,
                "train_sec": seconds,
                "elapsed_sec": seconds + 1.0,
            },
            step=step,
        )


def test_steady_rate_leaves_compilation_out_and_weighs_windows_by_time(tmp_path, capsys):
    windows = load_benchmark("trainer_windows")
    write_run(tmp_path / "causal", [(4, 0), (4, 1000.0), (4, 1000.0)])
    write_run(tmp_path / "docmask", [(4, 0), (4, 2000.0), (4, 1000.0)])
    rows = windows.main(["--after", "4", str(tmp_path / "causal"), str(tmp_path / "docmask" / "metrics.csv")])
    assert rows[0]["steps"] == (5, 12)
    assert rows[0]["tokens_per_sec"] == pytest.approx(1000.0)
    # 8,000 tokens in 2 s + 4 s: the time-weighted rate, not the windows' mean (1,500)
    assert rows[1]["tokens_per_sec"] == pytest.approx(8000 / 6)
    assert [s for s, _ in rows[1]["windows"]] == [8, 12]
    assert "1.333" in capsys.readouterr().out


def test_a_run_without_a_window_after_compilation_is_reported_beside_the_others(tmp_path, capsys):
    windows = load_benchmark("trainer_windows")
    write_run(tmp_path / "short", [(4, 0)])
    write_run(tmp_path / "whole", [(4, 0), (4, 1000.0)])
    rows = windows.main(["--after", "4", str(tmp_path / "short"), str(tmp_path / "whole")])
    assert [r["run"] for r in rows] == [str(tmp_path / "whole")]
    assert "not measured: " in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"short/metrics.csv: needs a logged step .* after it"):
        windows.main(["--after", "4", str(tmp_path / "short")])
    with pytest.raises(SystemExit, match="no metrics.csv"):
        windows.main([str(tmp_path / "absent")])
