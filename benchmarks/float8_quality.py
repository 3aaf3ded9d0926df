"""Does float8 training lose quality? The same pretraining run (model, data, schedule) in bf16 and in
float8, for one or more seeds; prints every run's final validation loss, each precision's mean and spread
over the seeds, and the relative difference of the means, and draws the loss curves into one PNG.

    python benchmarks/float8_quality.py --data_dir .gpu_data/data --tokenizer_dir .gpu_data/tokenizer \
        --model_name tiny_LLaMA_120M --steps 1000 --seeds 42,43,44 --jobs 6 --png benchmarks/results/float8_quality.png

Why several seeds: one run's final loss moves by about 1% with any change of its arithmetic (another card,
another kernel), so one pair cannot tell a 1% effect of float8 from chance (benchmarks/RESULTS.md).
`--jobs N` runs N trainings at once, taking the GPUs of `--gpus` in turn (trainings sharing a GPU are compared
by their losses, not their speed).
`--precisions bf16` runs the bf16 side only (to compare another tree's bf16 with this one's).

tiny_LLaMA_120M's linears are 768 wide, under the default float8 size rule; `--float8_min_features 0`
(the default here) converts them all, so the comparison measures float8 arithmetic on every block linear.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trainings import run_trainings

from lit_gpt.training.metrics import read_metrics


def pretrain_args(args, float8: str | None, seed: int) -> list[str]:
    cmd = [
        "--data_dir",
        str(args.data_dir),
        "--tokenizer_dir",
        str(args.tokenizer_dir),
        "--model_name",
        args.model_name,
        "--accelerator",
        args.accelerator,
        "--seed",
        str(seed),
        "--global_batch_size",
        str(args.global_batch),
        "--micro_batch_size",
        str(args.micro_batch),
        "--max_steps",
        str(args.steps),
        "--lr",
        str(args.lr),
        "--min_lr",
        str(args.lr / 10),
        "--warmup_steps",
        str(args.warmup_steps),
        "--log_interval",
        "10",
        "--eval_interval",
        str(args.eval_interval),
        "--eval_batches",
        str(args.eval_batches),
        "--save_interval",
        "0",
        "--tensorboard",
        "false",
        "--num_workers",
        "2",
        "--resume",
        "null",
    ]
    if float8:
        cmd += ["--float8", float8, "--float8_min_features", str(args.float8_min_features)]
    return cmd


def plot(runs: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = {}
    for name, series in runs.items():
        precision = name.rsplit("_seed", 1)[0]
        label = None if precision in colours else precision  # one legend entry per precision
        colour = colours.setdefault(precision, f"C{len(colours)}")
        steps, values = zip(*series["loss"])
        axes[0].plot(steps, values, color=colour, label=label, linewidth=0.8, alpha=0.8)
        steps, values = zip(*series["val_loss"])
        axes[1].plot(steps, values, color=colour, marker="o", markersize=3, label=label, alpha=0.8)
    axes[0].set(title="training loss", xlabel="optimizer step", ylabel="loss")
    axes[1].set(title="validation loss", xlabel="optimizer step", ylabel="loss")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", type=Path, required=True)
    p.add_argument("--tokenizer_dir", type=Path, required=True)
    p.add_argument("--out_dir", type=Path, default=Path("/tmp/float8_quality"))
    p.add_argument("--model_name", default="tiny_LLaMA_120M")
    p.add_argument("--accelerator", default="cuda")
    p.add_argument("--recipe", default="tensorwise", choices=["tensorwise", "rowwise"])
    p.add_argument("--float8_min_features", type=int, default=0)
    p.add_argument("--precisions", default="bf16,float8", help="comma-separated: bf16, float8 (the recipe)")
    p.add_argument("--seeds", default="42", help="comma-separated seeds; each precision runs every one")
    p.add_argument("--jobs", type=int, default=1, help="trainings run at once")
    p.add_argument("--gpus", default="", help="comma-separated GPU indices the trainings take in turn (default: all)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--global_batch", type=int, default=8)
    p.add_argument("--micro_batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup_steps", type=int, default=50)
    p.add_argument("--eval_interval", type=int, default=100)
    p.add_argument("--eval_batches", type=int, default=16)
    p.add_argument("--timeout", type=int, default=1800, help="seconds for one training")
    p.add_argument("--png", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    precisions = {"bf16": None, "float8": args.recipe}
    chosen = args.precisions.split(",")
    unknown = [c for c in chosen if c not in precisions]
    if unknown:
        raise SystemExit(f"--precisions: unknown {', '.join(unknown)} (bf16, float8)")
    seeds = [int(s) for s in args.seeds.split(",")]
    planned = {f"{c}_seed{seed}": (precisions[c], seed) for c in chosen for seed in seeds}
    commands = {name: pretrain_args(args, float8, seed) for name, (float8, seed) in planned.items()}
    seconds = run_trainings(commands, args.out_dir, args.jobs, args.gpus, args.timeout)
    runs = {}
    for name, (_, seed) in planned.items():
        runs[name] = {**read_metrics(args.out_dir / name / "metrics.csv"), "seed": seed}
    final = {name: runs[name]["val_loss"][-1][1] for name in planned}
    summary = {}
    for c in chosen:
        values = [final[f"{c}_seed{seed}"] for seed in seeds]
        summary[c] = dict(mean=sum(values) / len(values), min=min(values), max=max(values))
    relative = None
    if len(chosen) == 2:
        a, b = (summary[c]["mean"] for c in chosen)
        relative = abs(b - a) / a
    result = dict(
        model=args.model_name,
        steps=args.steps,
        global_batch=args.global_batch,
        recipe=args.recipe,
        seeds=seeds,
        final_val_loss=final,
        summary=summary,
        relative_difference_of_means=relative,
        last_tokens_per_sec={name: runs[name]["tokens_per_sec"][-1][1] for name in planned},
        wall_s=seconds,
        val_loss={name: runs[name]["val_loss"] for name in planned},
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    for name in planned:
        print(f"{name:22s} final val loss {final[name]:.4f}  wall {seconds[name]:.0f} s")
    for c in chosen:
        m = summary[c]
        print(f"{c:8s} mean of {len(seeds)} seeds {m['mean']:.4f}  (min {m['min']:.4f}, max {m['max']:.4f})")
    if relative is not None:
        print(f"relative difference of the means {relative:.2%} (must be under 1%)")
    if args.png:
        means = ", ".join(f"{c} {summary[c]['mean']:.4f}" for c in chosen)
        plot(runs, args.png, f"{args.model_name}, {args.steps} steps, seeds {args.seeds}: mean final val loss {means}")
    return result


if __name__ == "__main__":
    main()
