"""Draw a run's loss, validation loss, learning rate, gradient norm and throughput into one PNG.

python scripts/plot_run.py --run_dir out/demo [--output out/demo/run.png]
"""

from pathlib import Path


def plot_run(run_dir: Path, output: Path | None = None) -> Path:
    """Read `{run_dir}/metrics.csv` and write the figure (default `{run_dir}/run.png`).

    Args:
        run_dir: The pretraining or fine-tuning out_dir (it holds metrics.csv).
        output: Where to write the PNG.
    """
    import matplotlib

    from lit_gpt.training.metrics import read_metrics  # here, not at the top: `--help` must not wait for torch
    from lit_gpt.training.option_checks import check_path

    check_path("run_dir", run_dir, "folder")
    check_path("output", output, "output file")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    csv_path = Path(run_dir) / "metrics.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path} not found: is {run_dir} a run's out_dir?")
    series = read_metrics(csv_path)
    panels = [
        ("loss", ["loss", "val_loss"]),
        ("learning rate", ["lr"]),
        ("gradient norm", ["grad_norm"]),
        ("tokens/s per device", ["tokens_per_sec_per_device"]),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels)), sharex=True)
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            if key in series:
                steps, values = zip(*series[key])
                ax.plot(steps, values, marker="o" if len(steps) < 30 else None, ms=3, label=key)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    axes[-1].set_xlabel("optimizer step")
    fig.tight_layout()
    output = Path(output) if output else Path(run_dir) / "run.png"
    fig.savefig(output, dpi=110)
    plt.close(fig)
    print(f"wrote {output}")
    return output


def main(argv=None) -> None:
    """`lit-plot-run` and `scripts/plot_run.py`."""
    from lit_gpt.exit_codes import run_cli

    run_cli(plot_run, argv)


if __name__ == "__main__":
    main()
