"""Throughput, MFU and the run's logs (CSV always; TensorBoard and Weights & Biases through Fabric)."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.loggers import Logger
from lightning.fabric.utilities.rank_zero import rank_zero_only

# Dense bf16 peak TFLOP/s by device name fragment (datasheet figures without sparsity); the most specific first.
PEAK_BF16_TFLOPS = [
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),
    ("H200", 989.4),
    ("GH200", 989.4),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("A10G", 125.0),
    ("A10", 125.0),
    ("L4", 121.0),
    ("RTX 4090", 165.2),
    ("RTX 3090", 71.0),
    ("V100", 125.0),
]


def peak_flops(device: torch.device) -> float | None:
    """The card's dense bf16 peak in FLOP/s, or None where unknown (CPU, unlisted GPU): no MFU then."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, tflops in PEAK_BF16_TFLOPS:
        if fragment in name:
            return tflops * 1e12
    return None


# The first columns of metrics.csv, in order; a row leaves empty what was not measured at that step.
CSV_COLUMNS = [
    "step",
    "tokens",
    "loss",
    "lr",
    "grad_norm",
    "tokens_per_sec",
    "tokens_per_sec_per_device",
    "mfu",
    "peak_memory_gb",
    "skipped_steps",
    "val_loss",
    "val_ppl",
    "elapsed_sec",
    "train_sec",
]


class CSVMetricsLogger(Logger):
    """Appends one row per logged step to `{root}/metrics.csv`; a resumed run keeps writing the same
    file (readers keep the last row of a step that appears twice). A metric without a column yet (an
    lm-eval task's score, say) adds one: the file is rewritten once with the wider header."""

    def __init__(self, root_dir: Path, columns: list[str] = CSV_COLUMNS) -> None:
        self._root = Path(root_dir)
        self._columns = list(columns)
        self._path = self._root / "metrics.csv"

    @property
    def name(self) -> str:
        return "csv"

    @property
    def version(self) -> str:
        return ""

    @property
    def root_dir(self) -> str:
        return str(self._root)

    @rank_zero_only  # every rank logs the same reduced metrics; one writer keeps the file whole
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        row = {**metrics, "step": step if step is not None else metrics.get("step")}
        if self._path.exists():
            with open(self._path, newline="") as f:
                header = next(csv.reader(f), [])
            self._columns = header + [c for c in self._columns if c not in header]
        new_columns = [k for k in row if k not in self._columns]
        if new_columns:
            self._columns += new_columns
            if self._path.exists():
                self._rewrite_with_header()
        new = not self._path.exists()
        with open(self._path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._columns)
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(v) for k, v in row.items()})
            f.flush()
            os.fsync(f.fileno())

    def _rewrite_with_header(self) -> None:
        with open(self._path, newline="") as f:
            rows = list(csv.DictReader(f))
        tmp = self._path.with_name(self._path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self._path)

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass  # the run config is saved as YAML beside the log


def _fmt(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        v = v.item()
    return f"{v:.9g}" if isinstance(v, float) else v


def read_metrics(path: Path) -> dict[str, list[tuple]]:
    """metrics.csv as {column: [(step, value), ...]}, the last row winning for a repeated step."""
    by_step: dict[int, dict[str, str]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            step = int(row["step"])
            merged = by_step.setdefault(step, {})
            merged.update({k: v for k, v in row.items() if v not in ("", None)})
    series: dict[str, list[tuple]] = {}
    for step in sorted(by_step):
        for k, v in by_step[step].items():
            if k != "step":
                series.setdefault(k, []).append((step, float(v)))
    return series
