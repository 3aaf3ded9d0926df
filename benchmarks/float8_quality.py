"""Does float8 training lose quality? The same pretraining run (model, data, seed, schedule) in bf16 and in
float8, one after the other; prints both validation losses and their relative difference, and draws both
loss curves into one PNG.

    python benchmarks/float8_quality.py --data_dir .gpu_data/data --tokenizer_dir .gpu_data/tokenizer \
        --model_name tiny_LLaMA_120M --steps 1000 --png benchmarks/results/float8_quality.png

tiny_LLaMA_120M's linears are 768 wide, under the default float8 size rule; `--float8_min_features 0`
(the default here) converts them all, so the comparison measures float8 arithmetic on every block linear.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from lit_gpt.training.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]


def pretrain(args, out: Path, float8: str | None) -> float:
    cmd = [
        sys.executable,
        str(ROOT / "pretrain" / "tinyllama.py"),
        "--data_dir",
        str(args.data_dir),
        "--tokenizer_dir",
        str(args.tokenizer_dir),
        "--out_dir",
        str(out),
        "--model_name",
        args.model_name,
        "--accelerator",
        args.accelerator,
        "--seed",
        "42",
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
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    (out / "stdout.txt").parent.mkdir(parents=True, exist_ok=True)
    (out / "stdout.txt").write_text(proc.stdout + "\n" + proc.stderr)
    if proc.returncode:
        raise RuntimeError(f"{out.name}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return time.time() - t0


def plot(runs: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, series in runs.items():
        steps, values = zip(*series["loss"])
        axes[0].plot(steps, values, label=name, linewidth=1)
        steps, values = zip(*series["val_loss"])
        axes[1].plot(steps, values, marker="o", label=name)
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
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--global_batch", type=int, default=8)
    p.add_argument("--micro_batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup_steps", type=int, default=50)
    p.add_argument("--eval_interval", type=int, default=100)
    p.add_argument("--eval_batches", type=int, default=16)
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--png", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    runs, seconds = {}, {}
    for name, float8 in (("bf16", None), (f"float8 {args.recipe}", args.recipe)):
        out = args.out_dir / name.replace(" ", "_")
        seconds[name] = pretrain(args, out, float8)
        runs[name] = read_metrics(out / "metrics.csv")
    names = list(runs)
    final = {n: runs[n]["val_loss"][-1][1] for n in names}
    relative = abs(final[names[1]] - final[names[0]]) / final[names[0]]
    tokens_per_sec = {n: runs[n]["tokens_per_sec"][-1][1] for n in names}
    result = dict(
        model=args.model_name,
        steps=args.steps,
        global_batch=args.global_batch,
        final_val_loss=final,
        relative_difference=relative,
        last_tokens_per_sec=tokens_per_sec,
        wall_s=seconds,
        val_loss={n: runs[n]["val_loss"] for n in names},
    )
    if args.png:
        plot(
            runs,
            args.png,
            f"{args.model_name}, {args.steps} steps: bf16 vs float8 ({args.recipe}); "
            f"final validation loss {final[names[0]]:.4f} vs {final[names[1]]:.4f}",
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    for n in names:
        print(
            f"{n:22s} final val loss {final[n]:.4f}  last logged {tokens_per_sec[n]:,.0f} tok/s  wall "
            f"{seconds[n]:.0f} s"
        )
    print(f"relative difference {relative:.2%} (must be under 1%)")
    return result


if __name__ == "__main__":
    main()
