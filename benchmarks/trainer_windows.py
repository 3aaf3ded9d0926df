"""Steady tokens/s of finished trainer runs, from their metrics.csv: the tokens trained after step `--after`
(compilation and warm-up are before it) over the training time they took, and each logged window beside it.
The first run measured is the baseline of the ratio column; a run that cannot be measured (stopped before a
window after compilation) gets a row that says why, and the others are still reported.

    python benchmarks/trainer_windows.py --after 4 RUN_DIR_OR_METRICS_CSV [...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lit_gpt.training.metrics import read_metrics


def steady(path: Path, after: int) -> dict:
    """{"steps": first and last step counted, "tokens_per_sec": over them, "windows": the logged figures}."""
    csv_path = path / "metrics.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise ValueError(f"{csv_path}: no metrics.csv (did the run start?)")
    series = read_metrics(csv_path)
    tokens, seconds = dict(series.get("tokens", [])), dict(series.get("train_sec", []))
    steps = sorted(s for s in tokens if s in seconds)
    if not steps or steps[0] > after or steps[-1] <= after:
        raise ValueError(f"{csv_path}: needs a logged step at or before {after} and one after it; has {steps}")
    start = max(s for s in steps if s <= after)
    end = steps[-1]
    rate = (tokens[end] - tokens[start]) / (seconds[end] - seconds[start])
    windows = [(s, v) for s, v in series.get("tokens_per_sec", []) if s > after]
    return {"steps": (start + 1, end), "tokens_per_sec": rate, "windows": windows}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="a run's out_dir or its metrics.csv")
    p.add_argument("--after", type=int, default=4, help="the last step left out (compilation)")
    args = p.parse_args(argv)
    rows, failed = [], []
    for run in args.runs:
        try:
            rows.append(dict(run=str(run), **steady(run, args.after)))
        except ValueError as e:
            failed.append(str(e))
    if not rows:
        raise SystemExit("\n".join(failed))
    base = rows[0]["tokens_per_sec"]
    print(f"{'run':50s} {'steps':>8s} {'tok/s':>9s} {'ratio':>6s}  windows (step: tok/s)")
    for row in rows:
        first, last = row["steps"]
        windows = ", ".join(f"{s}: {v:,.0f}" for s, v in row["windows"])
        print(
            f"{row['run'][-50:]:50s} {f'{first}-{last}':>8s} {row['tokens_per_sec']:9,.0f} "
            f"{row['tokens_per_sec'] / base:6.3f}  {windows}"
        )
    for why in failed:
        print(f"not measured: {why}")
    return rows


if __name__ == "__main__":
    main()
