"""One device against two: the loss curves of real pretraining must agree, and so must resumes across counts.

Runs pretrain/tinyllama.py (through tests/training/run_pretrain.py, which can preempt a run with
SIGTERM) on the sample corpus with a fixed seed and the same global batch:

- `1`: one device, gradient accumulation; `2`: two devices, FSDP2 (half the accumulation);
- `2->1`: two devices stopped by SIGTERM in step `--stop_at`, resumed from that checkpoint on one;
- `1->2`: the same the other way round.

Prints the largest relative loss difference of each pair (2 vs 1, 2->1 vs 2, 1->2 vs 1) and plots all
curves into one PNG. bf16 on GPU agrees within bf16 noise (~1e-2); fp32 on CPU to ~1e-5.

    python benchmarks/parity_1v2.py                      # tiny_LLaMA_1b, context 2048, CUDA, bf16
    python benchmarks/parity_1v2.py --smoke              # a tiny model on CPU in fp32 (about a minute)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from lit_gpt.cli import STOPPED_AND_SAVED
from lit_gpt.cli.shipped import demo_data
from lit_gpt.training.checkpointing import list_checkpoints
from lit_gpt.training.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]

LAUNCHER = ROOT / "tests" / "training" / "run_pretrain.py"
SMOKE_MODEL = dict(
    name="parity_tiny",
    n_layer=2,
    n_head=4,
    n_query_groups=2,
    n_embd=64,
    intermediate_size=176,
    vocab_size=4096,
    block_size=64,
    kernels="torch",
)
# run name -> (processes, processes after the interruption at --stop_at; None: not interrupted)
RUNS = {"1": (1, None), "2": (2, None), "2->1": (2, 1), "1->2": (1, 2)}
PAIRS = (("2", "1"), ("2->1", "2"), ("1->2", "1"))


def pretrain(args, out: Path, devices: int, sigterm_after: int | None = None) -> None:
    cmd = [sys.executable, str(LAUNCHER)] + (["--sigterm_after_batches", str(sigterm_after)] if sigterm_after else [])
    cmd += [
        "--",
        "--data_dir",
        str(args.data_dir),
        "--tokenizer_dir",
        str(args.tokenizer_dir),
        "--out_dir",
        str(out),
        "--accelerator",
        args.accelerator,
        "--devices",
        str(devices),
        "--strategy",
        "fsdp" if devices > 1 else "auto",
        "--precision",
        args.precision,
        "--seed",
        str(args.seed),
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
        "1",
        "--val_prefix",
        "",
        "--save_interval",
        "0",
        "--tensorboard",
        "false",
        "--num_workers",
        str(args.num_workers),
    ]
    cmd += ["--initial_checkpoint", str(args.initial_checkpoint)]
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "NCCL_NVLS_ENABLE": "0",
    }
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    # a run stopped by the signal saves and exits with STOPPED_AND_SAVED, a finished one with 0
    if proc.returncode != (STOPPED_AND_SAVED if sigterm_after else 0):
        raise RuntimeError(
            f"{out.name} on {devices} devices: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )


def write_initial_weights(args, folder: Path) -> Path:
    """One set of initial weights for every run: a model initialised on 2 shards (each rank drawing its
    own shard) does not start where one initialised whole does, and the curves would differ from step 1."""
    import torch

    from lit_gpt.checkpoint import save_lit_checkpoint
    from lit_gpt.config import Config
    from lit_gpt.model import GPT

    config = Config.from_file(args.model_config) if args.model_config else Config.from_name(args.model_name)
    torch.manual_seed(args.seed)
    save_lit_checkpoint(folder, GPT(config).state_dict(), config, args.tokenizer_dir)
    return folder


def stop_then_resume(args, out: Path, first: int, then: int) -> None:
    accumulation = args.global_batch // (args.micro_batch * first)
    # rank 0 signals itself when asked for the batch after the K-th: the first micro batch of step stop_at
    # with accumulation 1, its second otherwise; the step in flight finishes and is saved
    pretrain(args, out, first, sigterm_after=(args.stop_at - 1) * accumulation + (accumulation > 1))
    saved = [s for s, _ in list_checkpoints(out / "checkpoints")]
    if saved != [args.stop_at]:
        raise RuntimeError(f"{out.name}: expected one checkpoint at step {args.stop_at}, found {saved}")
    pretrain(args, out, then)


def max_relative_difference(a: dict, b: dict) -> float:
    if sorted(a) != sorted(b):
        raise ValueError(f"the runs logged different steps: {sorted(set(a) ^ set(b))}")
    return max(abs(a[s] - b[s]) / abs(b[s]) for s in b)


def plot(curves: dict, differences: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, height_ratios=(2, 1))
    for (name, losses), style in zip(curves.items(), ("-", "--", ":", "-.")):
        steps = sorted(losses)
        top.plot(steps, [losses[s] for s in steps], style, label=name)
    top.set_ylabel("training loss")
    top.set_title(title)
    top.legend()
    for a, b in (pair.split(" vs ") for pair in differences):
        steps = sorted(curves[b])
        bottom.plot(
            steps,
            [abs(curves[a][s] - curves[b][s]) / abs(curves[b][s]) for s in steps],
            label=f"{a} vs {b} (max {differences[f'{a} vs {b}']:.1e})",
        )
    bottom.set_yscale("symlog", linthresh=1e-7)
    bottom.set_xlabel("optimizer step")
    bottom.set_ylabel("relative difference")
    bottom.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--accelerator", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--model_name", default="tiny_LLaMA_1b")
    p.add_argument("--model_config", type=Path, default=None, help="a YAML/JSON model config instead of --model_name")
    p.add_argument("--data_dir", type=Path, default=None, help="packed shards (default: the sample corpus, prepared)")
    p.add_argument("--tokenizer_dir", type=Path, default=None, help="with --data_dir: the tokenizer it was made with")
    p.add_argument("--out_dir", type=Path, default=None, help="the runs' folders (default: a temporary folder)")
    p.add_argument("--micro_batch", type=int, default=4)
    p.add_argument("--global_batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--stop_at", type=int, default=15, help="the step the interrupted runs stop (and save) in")
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--warmup_steps", type=int, default=5)
    p.add_argument("--precision", default=None, help="default: bf16-mixed on CUDA, 32-true on CPU")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--num_workers", type=int, default=2)
    p.add_argument("--png", type=Path, default=ROOT / "benchmarks" / "results" / "parity_1v2.png")
    p.add_argument("--json", type=Path, default=None, help="write the curves and differences to this file")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per pretraining run")
    p.add_argument("--smoke", action="store_true", help="CPU, fp32, a tiny model, micro batch 2, global batch 8")
    p.add_argument(
        "--runs", default="1,2,2->1,1->2", help="which runs (comma-separated); a pair is compared when both ran"
    )
    args = p.parse_args(argv)
    wanted = args.runs.split(",")
    if unknown := set(wanted) - set(RUNS):
        p.error(f"--runs: unknown run(s) {', '.join(sorted(unknown))} (known: {', '.join(RUNS)})")
    if args.smoke:
        args.accelerator, args.micro_batch, args.global_batch, args.lr, args.num_workers = "cpu", 2, 8, 3e-3, 0
    args.precision = args.precision or ("bf16-mixed" if args.accelerator == "cuda" else "32-true")
    if args.global_batch % (2 * args.micro_batch):
        p.error("--global_batch must be a multiple of 2 x --micro_batch")
    if not 1 < args.stop_at < args.steps:
        p.error("--stop_at must lie between 1 and --steps")

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out_dir or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        if args.data_dir is None:
            from lit_gpt.data.demo import prepare_sample

            args.data_dir, args.tokenizer_dir = prepare_sample(demo_data("sample"), out / "sample")
        if args.smoke and not args.model_config:
            import yaml

            args.model_config = out / "parity_tiny.yaml"
            args.model_config.write_text(yaml.safe_dump(SMOKE_MODEL))
        args.initial_checkpoint = write_initial_weights(args, out / "initial")
        curves = {}
        for name, (first, then) in RUNS.items():
            if name not in wanted:
                continue
            folder = out / ("run_" + name.replace("->", "_to_"))
            shutil.rmtree(folder, ignore_errors=True)  # a leftover run would be resumed
            if then is None:
                pretrain(args, folder, first)
            else:
                stop_then_resume(args, folder, first, then)
            curves[name] = dict(read_metrics(folder / "metrics.csv")["loss"])
            print(f"{name}: {len(curves[name])} steps, final loss {curves[name][max(curves[name])]:.4f}", flush=True)
    pairs = [(a, b) for a, b in PAIRS if a in curves and b in curves]
    differences = {f"{a} vs {b}": max_relative_difference(curves[a], curves[b]) for a, b in pairs}
    model = args.model_config.stem if args.model_config else args.model_name
    title = (
        f"{model}, {args.accelerator} {args.precision}, global batch {args.global_batch} "
        f"(micro {args.micro_batch}), resume at step {args.stop_at}"
    )
    plot(curves, differences, args.png, title)
    result = dict(
        differences=differences,
        curves={k: sorted(v.items()) for k, v in curves.items()},
        png=str(args.png),
        title=title,
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print("\n" + "\n".join(f"max relative loss difference {pair:12s} {d:.2e}" for pair, d in differences.items()))
    print(f"plot: {args.png}")
    return result


if __name__ == "__main__":
    main()
