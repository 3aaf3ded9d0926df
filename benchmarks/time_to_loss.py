"""Wall-clock time to a validation loss: one model trained under several configurations (optimizer, float8,
learning rate) on the same prepared corpus in the same data order, the held-out loss evaluated at fixed
intervals of training time; for each configuration, the time it needs to reach the baseline's final loss.

    python benchmarks/time_to_loss.py prepare --out /tmp/ttl              # corpus, tokenizer, shards
    python benchmarks/time_to_loss.py train --data /tmp/ttl --phase sweep --jobs 3
    python benchmarks/time_to_loss.py train --data /tmp/ttl --phase final --only adamw,muon --seeds 1
    python benchmarks/time_to_loss.py steptime --data /tmp/ttl --only adamw,muon
    python benchmarks/time_to_loss.py report --data /tmp/ttl --png time_to_loss.png --json time_to_loss.json

`prepare` gathers real source text nobody here wrote, from the machine it runs on: the Python source of the
installed packages (site-packages) and the C and C++ headers there and under /usr/include, one document per
file; whole packages are held out for validation. It trains a 32,000-piece tokenizer with `lit-train-tokenizer`
and packs both splits with `lit-prepare-corpus`; nothing of this counts as training time.

`train` runs the real trainer (`lit-pretrain`) for each configuration of the plan (a YAML file:
benchmarks/configs/time_to_loss_120m.yaml). Phase `sweep`: every configuration at each of its learning rates
on `sweep_tokens` (the schedule shortened alike). Phase `final`: each configuration at its best swept rate (or
`--lr`) on `tokens`, for every seed; with `--stop_at_target` a challenger's run ends once its validation loss
reaches the baseline's final one (the baseline's finals first), which is all the report needs of it; a run
an earlier job stopped at a higher target (another `--baseline_lr`) is trained again. It
refuses a plan that would read more tokens than the training split holds (no token is seen twice). `--jobs N`
trains N at once on one GPU: their losses count, their times do not (each run records whether it shared the
GPU).

`steptime` measures every configuration's tokens/s in one job, one after the other, so that the ratio of two
configurations can also be given as tokens-to-loss times step time measured side by side.

`report` takes the baseline's final runs (the plan's `baseline` configuration at its best swept rate, or at
`--baseline_lr` where its final at another rate ended lower): the target is the mean of their final validation
losses, their wall time the mean of their training times. For every final
run it gives the training time and tokens to reach the target (linearly interpolated between evaluations),
and draws every curve against training seconds and against tokens into one PNG. Training time is the trainer's
`train_sec`: the time in training steps, start-up, compilation included, validation and saving left out. Each
run records its GPU; a wall time from another card than the baseline's is flagged (its token ratio holds).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import sysconfig
import zlib
from collections.abc import Callable
from pathlib import Path

import yaml
from trainings import run_trainings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PLAN = ROOT / "benchmarks" / "configs" / "time_to_loss_120m.yaml"
SUFFIXES = {".py", ".pyi", ".h", ".hh", ".hpp", ".hxx", ".cuh", ".inc", ".inl", ".tcc"}
MAX_FILE_BYTES = 1 << 20  # larger "sources" are generated tables, not text anyone wrote
TRAIN_SOURCE, VAL_SOURCE = "code", "heldout"  # shard prefixes train_code_*, train_heldout_*


# --- prepare --------------------------------------------------------------------------------------------------
def source_roots() -> list[Path]:
    """The installed packages of this Python and the system's headers."""
    roots = {Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")}
    roots |= {Path(p) for p in sys.path if p.endswith(("site-packages", "dist-packages"))}
    roots.add(Path("/usr/include"))
    return sorted(r for r in roots if r.is_dir())


def packages(roots: list[Path]) -> dict[str, list[Path]]:
    """Source files grouped by package: the first path component under a root (a top-level module is its own)."""
    found: dict[str, list[Path]] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.suffix not in SUFFIXES or not path.is_file() or path.is_symlink():
                continue
            top = path.relative_to(root).parts[0]
            if top.endswith((".dist-info", ".egg-info")) or top == "__pycache__":
                continue
            name = f"{root.name}:{Path(top).stem}"
            found.setdefault(name, []).append(path)
    return found


def hold_out(sizes: dict[str, int], fraction: float) -> set[str]:
    """Whole packages for validation, about `fraction` of the bytes: taken in the order of a hash of their name
    (no choice by content), none larger than the share still missing."""
    target, held, total = fraction * sum(sizes.values()), set(), 0
    for name in sorted(sizes, key=lambda n: zlib.crc32(n.encode())):
        if total + sizes[name] <= target:
            held.add(name)
            total += sizes[name]
    return held


def write_documents(files: list[Path], parts: int, folder: Path) -> tuple[int, int]:
    """`files` as `{"text": ...}` lines in `parts` .jsonl.zst files, round-robin; (documents, bytes) written."""
    import zstandard

    folder.mkdir(parents=True, exist_ok=True)
    writers = [
        zstandard.ZstdCompressor(level=3).stream_writer(open(folder / f"part_{i:03d}.jsonl.zst", "wb"))
        for i in range(parts)
    ]
    documents = size = 0
    try:
        for i, path in enumerate(files):
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if not text.strip():
                continue
            writers[i % parts].write((json.dumps({"text": text}) + "\n").encode())
            documents, size = documents + 1, size + len(text.encode())
    finally:
        for w in writers:
            w.close()
    return documents, size


def command(module: str, *args: str) -> None:
    """A console command of the package (`python -m lit_gpt.cli.<module>`, the code behind `lit-<module>`)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-m", f"lit_gpt.cli.{module}", *args], check=True, env=env)


def prepare(args) -> None:
    out = args.out
    corpus, tokenizer, data = out / "corpus", out / "tokenizer", out / "data"
    found = packages([Path(r) for r in args.roots] if args.roots else source_roots())
    sizes = {name: sum(min(p.stat().st_size, MAX_FILE_BYTES + 1) for p in files) for name, files in found.items()}
    held = hold_out(sizes, args.val_fraction)
    if not held:
        raise SystemExit(f"no whole package fits in {args.val_fraction:.1%} of the bytes: raise --val_fraction")
    split = {"train": [], "val": []}
    for name in sorted(found):
        split["val" if name in held else "train"] += [p for p in found[name] if p.stat().st_size <= MAX_FILE_BYTES]
    summary = {"packages": len(found), "held_out_packages": sorted(held)}
    for name, files in split.items():
        docs, size = write_documents(files, args.parts if name == "train" else max(1, args.parts // 8), corpus / name)
        summary[name] = {"documents": docs, "bytes": size}
    (corpus / "empty").mkdir(exist_ok=True)  # lit-train-tokenizer's code folder: the prose folder holds it all
    command(
        "train_tokenizer",
        *("--out_dir", str(tokenizer), "--slimpajama_dir", str(corpus / "train")),
        *("--starcoder_dir", str(corpus / "empty"), "--vocab_size", str(args.vocab_size)),
        *("--max_chars", str(args.tokenizer_chars), "--num_threads", str(os.cpu_count())),
    )
    for name, source in (("train", TRAIN_SOURCE), ("val", VAL_SOURCE)):
        command(
            "prepare_corpus",
            *("--inputs", json.dumps([str(corpus / name)]), "--source", source),
            *("--tokenizer_path", str(tokenizer), "--destination_path", str(data)),
        )
        manifest = json.loads((data / f"train_{source}.manifest.json").read_text())
        summary[name]["tokens"] = manifest["tokens"]
        summary[name]["bytes_per_token"] = summary[name]["bytes"] / max(1, manifest["tokens"])
    (out / "corpus.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "held_out_packages"}, indent=1))


# --- train ----------------------------------------------------------------------------------------------------
def load_plan(path: Path) -> dict:
    plan = yaml.safe_load(path.read_text())
    for key in ("model_name", "global_batch_size", "micro_batch_size", "tokens", "sweep_tokens", "configs"):
        if key not in plan:
            raise SystemExit(f"{path}: the plan has no {key!r}")
    if plan["baseline"] not in plan["configs"]:
        raise SystemExit(f"{path}: baseline {plan['baseline']!r} is not one of the configs")
    return plan


def readable_tokens(data: Path, block_size: int) -> int:
    """Tokens the trainer can read from the training split without repeating one (whole samples only)."""
    from lit_gpt.data.stream import find_shards

    return sum(s.tokens // (block_size + 1) for s in find_shards(data, f"train_{TRAIN_SOURCE}")) * block_size


def run_name(config: str, lr: float, seed: int, phase: str) -> str:
    return f"{phase}_{config}_lr{lr:g}_seed{seed}"


def trainer_args(plan: dict, data: Path, settings: dict, lr: float, seed: int, tokens: int) -> list[str]:
    from lit_gpt.config import Config

    block = Config.from_name(plan["model_name"]).block_size
    steps = -(-tokens // (plan["global_batch_size"] * block))
    args = [
        *("--data_dir", str(data / "data"), "--tokenizer_dir", str(data / "tokenizer")),
        *("--model_name", plan["model_name"], "--seed", str(seed)),
        *("--train_sources", json.dumps({f"train_{TRAIN_SOURCE}": 1.0}), "--val_prefix", f"train_{VAL_SOURCE}"),
        *("--global_batch_size", str(plan["global_batch_size"]), "--micro_batch_size", str(plan["micro_batch_size"])),
        *("--max_steps", str(steps), "--warmup_steps", str(max(1, round(plan["warmup_fraction"] * steps)))),
        *("--lr", str(lr), "--min_lr", str(lr * plan["min_lr_fraction"])),
        *("--eval_interval", "0", "--eval_interval_sec", str(plan["eval_interval_sec"])),
        *("--eval_batches", str(plan["eval_batches"]), "--log_interval", "10"),
        *("--save_interval", "0", "--tensorboard", "false", "--resume", "null"),
    ]
    # options for every run (`trainer` in the plan), then the configuration's own
    for key, value in [*plan.get("trainer", {}).items(), *settings.items()]:
        if key != "lrs":
            args += [f"--{key}", str(value)]
    return args


def best_rate(runs: Path, config: str) -> float:
    """The swept rate with the lowest final validation loss (a warning when it is at the edge of the sweep)."""
    finals = {}
    for folder in sorted(runs.glob(f"sweep_{config}_lr*")):
        if not (folder / "run.json").is_file():
            continue  # unfinished
        meta = json.loads((folder / "run.json").read_text())
        finals[meta["lr"]] = final_val_loss(folder)
    if not finals:
        raise SystemExit(f"{runs}: no sweep of {config} yet: run --phase sweep first, or give --lr")
    best = min(finals, key=finals.get)
    if best in (min(finals), max(finals)) and len(finals) > 1:
        print(f"warning: {config}'s best rate {best:g} is at the edge of its sweep {sorted(finals)}")
    return best


def final_val_loss(folder: Path) -> float:
    from lit_gpt.training.metrics import read_metrics

    return read_metrics(folder / "metrics.csv")["val_loss"][-1][1]


def train(args) -> None:
    from lit_gpt.config import Config

    plan = load_plan(args.plan)
    if args.micro_batch_size:
        plan["micro_batch_size"] = args.micro_batch_size
    runs = args.data / "runs"
    chosen = args.only.split(",") if args.only else list(plan["configs"])
    unknown = [c for c in chosen if c not in plan["configs"]]
    if unknown:
        raise SystemExit(f"--only: {', '.join(unknown)} not in the plan ({', '.join(plan['configs'])})")
    if args.stop_at_target and (args.phase != "final" or plan["baseline"] in chosen):
        raise SystemExit(
            f"--stop_at_target: for final runs of configurations other than the baseline ({plan['baseline']})"
        )
    tokens = plan["sweep_tokens" if args.phase == "sweep" else "tokens"]
    available = readable_tokens(args.data / "data", Config.from_name(plan["model_name"]).block_size)
    if tokens > available:
        raise SystemExit(
            f"the plan trains {tokens:,} tokens a run but the training split holds {available:,} readable tokens: "
            f"every token would not be new (prepare a larger corpus or lower `tokens` in {args.plan})"
        )
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else plan["seeds"]
    planned = {}
    for config in chosen:
        settings = plan["configs"][config]
        if args.phase == "sweep":
            points = [(lr, plan["sweep_seed"]) for lr in settings["lrs"]]
        else:
            lr = args.lr if args.lr is not None else best_rate(runs, config)
            points = [(lr, seed) for seed in seeds]
        for lr, seed in points:
            name = run_name(config, lr, seed, args.phase)
            planned[name] = (config, lr, seed, trainer_args(plan, args.data, settings, lr, seed, tokens))
    stop_when, stopped = None, set()
    if args.stop_at_target:
        finals = read_final_runs(runs)
        base = baseline_runs(plan, finals, runs, args.baseline_lr).values()
        target = statistics.mean(r["by_seconds"][-1][1] for r in base)
        print(f"each run stops once its validation loss reaches the baseline's {target:.4f}", flush=True)
        at_target = reached(target)

        def stop_when(folder: Path) -> bool:  # remembers the runs it ended
            if at_target(folder):
                stopped.add(folder.name)
                return True
            return False

    done = {name for name in planned if (runs / name / "run.json").is_file()}  # an earlier job's (or session's)
    if args.stop_at_target:  # a run stopped at a higher target (another baseline) never saw this one: run again
        done = {n for n in done if not (finals[n].get("stopped_at_target") and finals[n]["by_seconds"][-1][1] > target)}
    todo = {n: p[3] for n, p in planned.items() if n not in done}
    print(f"{len(todo)} runs, {args.jobs} at a time: {', '.join(todo)}; kept: {', '.join(done) or 'none'}", flush=True)
    for name in sorted(done):
        print(f"{name:40s} final val loss {final_val_loss(runs / name):.4f}  (kept)", flush=True)
    for name in todo:  # an earlier job's run, unfinished or stopped short of this target: put aside, started afresh
        if (runs / name).exists():
            why = "stopped_above_target" if (runs / name / "run.json").is_file() else "cut_off"
            aside = runs / why / name
            while aside.exists():
                aside = aside.with_name(aside.name + "+")
            aside.parent.mkdir(parents=True, exist_ok=True)
            (runs / name).rename(aside)
            print(f"{name}: the run of an earlier job moved to {aside}", flush=True)

    card = card_name()

    def finished(name: str, seconds: float) -> None:  # recorded as each run ends: a job cut off keeps it
        config, lr, seed, _ = planned[name]
        meta = dict(config=config, lr=lr, seed=seed, phase=args.phase, tokens=tokens, shared_gpu=args.jobs > 1)
        meta.update(card=card, stopped_at_target=name in stopped)
        if stop_when:
            meta["target"] = target
        (runs / name / "run.json").write_text(json.dumps({**meta, "wall_s": seconds}))
        print(f"{name:40s} final val loss {final_val_loss(runs / name):.4f}  wall {seconds:.0f} s", flush=True)

    run_trainings(todo, runs, args.jobs, timeout=args.timeout, stop_when=stop_when, finished=finished)


def card_name() -> str:
    """The GPU the trainings run on (its wall times compare only with runs on the same card)."""
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def steptime(args) -> None:
    """Every chosen configuration for `--steps` steps, one after the other in this job: tokens/s each."""
    plan = load_plan(args.plan)
    chosen = args.only.split(",") if args.only else list(plan["configs"])
    out = args.data / "steptime"
    result = {}
    for config in chosen:
        settings = plan["configs"][config]
        lr = settings["lrs"][len(settings["lrs"]) // 2]
        from lit_gpt.config import Config

        block = Config.from_name(plan["model_name"]).block_size
        trainer = trainer_args(plan, args.data, settings, lr, 1, args.steps * plan["global_batch_size"] * block)
        trainer += ["--val_prefix", ""]  # no validation: the steps alone
        run_trainings({config: trainer}, out, 1, timeout=args.timeout)
        result[config] = median_tokens_per_sec(out / config)
        print(f"{config:16s} {result[config]:,.0f} tokens/s", flush=True)
    (out / "steptime.json").write_text(json.dumps(result, indent=1))


def median_tokens_per_sec(folder: Path) -> float:
    """The median of the logged tokens/s, the first two log windows (compilation, warm-up) left out."""
    from lit_gpt.training.metrics import read_metrics

    values = [v for _, v in read_metrics(folder / "metrics.csv")["tokens_per_sec"]]
    return statistics.median(values[2:] if len(values) > 4 else values)


# --- report ---------------------------------------------------------------------------------------------------
def time_to(curve: list[tuple[float, float]], target: float) -> float:
    """The first x at which the (x, loss) curve reaches `target`, interpolated linearly; inf if it never does."""
    for (x0, y0), (x1, y1) in zip([(0.0, math.inf)] + curve[:-1], curve):
        if y1 <= target:
            if not math.isfinite(y0) or y0 == y1:
                return x1
            return x0 + (y0 - target) / (y0 - y1) * (x1 - x0)
    return math.inf


def read_final_runs(runs: Path) -> dict[str, dict]:
    from lit_gpt.training.metrics import read_metrics

    found = {}
    for folder in sorted(runs.glob("final_*")):
        if not (folder / "run.json").is_file():
            continue  # unfinished
        series = read_metrics(folder / "metrics.csv")
        seconds = dict(series["train_sec"])
        tokens = dict(series["tokens"])
        val = [(step, loss) for step, loss in series["val_loss"]]
        found[folder.name] = {
            **json.loads((folder / "run.json").read_text()),
            "by_seconds": [(seconds[s], loss) for s, loss in val],
            "by_tokens": [(tokens[s], loss) for s, loss in val],
            "train_sec": series["train_sec"][-1][1],
            # the training time at the first logged step: start-up, the compilation above all (a cold compile
            # cache on a fresh machine costs more than a warm one, which the wall ratio then includes)
            "startup_sec": series["train_sec"][0][1],
            "tokens_per_sec": median_tokens_per_sec(folder),
        }
    return found


def baseline_runs(plan: dict, runs: dict[str, dict], folder: Path, lr: float | None = None) -> dict[str, dict]:
    """The baseline configuration's final runs (that ran to their end) at rate `lr` (default: its best swept rate),
    by name: their mean final loss is the target. Its finals at other rates (a check of the sweep) are compared
    like a challenger's; one that ends lower makes the stricter baseline (`--baseline_lr`)."""
    base = {n: r for n, r in runs.items() if r["config"] == plan["baseline"] and not r.get("stopped_at_target")}
    if lr is not None:
        rates = sorted({r["lr"] for r in base.values()})
        base = {n: r for n, r in base.items() if math.isclose(r["lr"], lr, rel_tol=1e-9)}
        if not base:
            raise SystemExit(f"--baseline_lr {lr:g}: no whole final run of {plan['baseline']!r} at it (rates: {rates})")
    if not base:
        raise SystemExit(f"no final run of the baseline {plan['baseline']!r} in {folder}")
    if len({r["lr"] for r in base.values()}) > 1:
        best = best_rate(folder, plan["baseline"])
        base = {n: r for n, r in base.items() if r["lr"] == best}
    return base


def reached(target: float) -> Callable[[Path], bool]:
    """Whether a running training's last validation loss is at or below `target` (its metrics.csv is read
    while being written: a row not yet whole counts as not reached)."""

    def check(folder: Path) -> bool:
        from lit_gpt.training.metrics import read_metrics

        try:
            val = read_metrics(folder / "metrics.csv").get("val_loss", [])
        except (OSError, ValueError, KeyError, IndexError):
            return False
        return bool(val) and val[-1][1] <= target

    return check


def report(args) -> dict:
    plan = load_plan(args.plan)
    runs = read_final_runs(args.data / "runs")
    baseline = baseline_runs(plan, runs, args.data / "runs", args.baseline_lr)
    base, base_names = list(baseline.values()), set(baseline)
    target = statistics.mean(r["by_seconds"][-1][1] for r in base)
    base_seconds = statistics.mean(r["train_sec"] for r in base)
    base_tokens = statistics.mean(r["by_tokens"][-1][0] for r in base)
    base_cards = {r.get("card") for r in base}
    steps_file = args.data / "steptime" / "steptime.json"
    step_tps = json.loads(steps_file.read_text()) if steps_file.is_file() else {}
    rows = {}
    for name, r in runs.items():
        rows[name] = dict(
            config=r["config"],
            lr=r["lr"],
            seed=r["seed"],
            final_val_loss=r["by_seconds"][-1][1],
            tokens_per_sec=r["tokens_per_sec"],
            startup_sec=r["startup_sec"],
            shared_gpu=r["shared_gpu"],
            card=r.get("card"),
            stopped_at_target=r.get("stopped_at_target", False),
            seconds_to_target=time_to(r["by_seconds"], target),
            tokens_to_target=time_to(r["by_tokens"], target),
        )
    summary = {}  # one entry a configuration and rate: a rate that did not carry to the final is not averaged in
    for config, lr in sorted({(r["config"], r["lr"]) for r in rows.values()}):
        mine = [n for n, r in rows.items() if (r["config"], r["lr"]) == (config, lr)]
        if base_names.issuperset(mine):  # its time is its whole run (a seed ending above the mean never reaches it)
            seconds = [runs[n]["train_sec"] for n in mine]
            tokens = [runs[n]["by_tokens"][-1][0] for n in mine]
        else:
            seconds = [rows[n]["seconds_to_target"] for n in mine]
            tokens = [rows[n]["tokens_to_target"] for n in mine]
        entry = dict(
            runs=len(mine),
            seconds_to_target=statistics.mean(seconds),
            seconds_spread=(min(seconds), max(seconds)),
            tokens_to_target=statistics.mean(tokens),
            wall_ratio=statistics.mean(seconds) / base_seconds,
            token_ratio=statistics.mean(tokens) / base_tokens,
            # a wall ratio across cards compares the cards too: then only the token and step-time ratios hold
            other_card=any(rows[n]["card"] not in base_cards for n in mine),
        )
        if config in step_tps and plan["baseline"] in step_tps:
            # tokens to the target at each configuration's own speed, both speeds measured in one job
            entry["ratio_by_step_time"] = entry["token_ratio"] * step_tps[plan["baseline"]] / step_tps[config]
        summary[f"{config}_lr{lr:g}"] = entry
    result = dict(
        plan=str(args.plan),
        target_val_loss=target,
        baseline_train_sec=base_seconds,
        baseline_tokens=base_tokens,
        steptime_tokens_per_sec=step_tps,
        runs=rows,
        summary=summary,
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.png:
        plot(runs, target, args.png, f"{plan['model_name']}: target {target:.4f} (the {plan['baseline']} mean)")
    print(f"target: the baseline's mean final validation loss {target:.4f}, in {base_seconds:.0f} s of training")
    print(f"{'run':40s} {'final':>7s} {'tok/s':>9s} {'start s':>8s} {'s to target':>12s} {'tokens to target':>17s}")
    for name, r in rows.items():
        notes = " (shared GPU)" if r["shared_gpu"] else ""
        notes += " (stopped at the target)" if r["stopped_at_target"] else ""
        notes += f" (on {r['card']}, not the baseline's card)" if r["card"] not in base_cards else ""
        print(
            f"{name:40s} {r['final_val_loss']:7.4f} {r['tokens_per_sec']:9,.0f} {r['startup_sec']:8.1f} "
            f"{r['seconds_to_target']:12.1f} {r['tokens_to_target']:17,.0f}{notes}"
        )
    print(f"{'config':24s} {'wall ratio':>10s} {'spread (s)':>16s} {'token ratio':>11s} {'by step time':>12s}")
    for config, e in summary.items():
        lo, hi = e["seconds_spread"]
        by_steps = f"{e['ratio_by_step_time']:.3f}" if "ratio_by_step_time" in e else "-"
        other = "  (wall time on another card than the baseline's)" if e["other_card"] else ""
        print(
            f"{config:24s} {e['wall_ratio']:10.3f} {lo:7.0f}-{hi:<8.0f} {e['token_ratio']:11.3f} {by_steps:>12s}{other}"
        )
    return result


def plot(runs: dict, target: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    colours: dict[str, str] = {}
    for name, r in runs.items():
        series = f"{r['config']} (lr {r['lr']:g})"
        label = None if series in colours else series
        colour = colours.setdefault(series, f"C{len(colours)}")
        for ax, key in zip(axes, ("by_seconds", "by_tokens")):
            x, y = zip(*r[key])
            ax.plot(x, y, color=colour, marker="o", markersize=2, linewidth=1, alpha=0.85, label=label)
    axes[0].set(xlabel="training seconds (validation left out)", ylabel="validation loss")
    axes[1].set(xlabel="tokens", ylabel="validation loss")
    for ax in axes:
        ax.axhline(target, color="grey", linestyle="--", linewidth=0.8)
        ax.set_ylim(top=target + 1.5)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="job", required=True)
    prep = sub.add_parser("prepare", help="gather the corpus, train the tokenizer, pack the shards")
    prep.add_argument("--out", type=Path, required=True)
    prep.add_argument("--roots", nargs="*", help="folders to gather from (default: site-packages, /usr/include)")
    prep.add_argument("--val_fraction", type=float, default=0.02, help="share of the bytes held out, whole packages")
    prep.add_argument("--parts", type=int, default=64, help=".jsonl.zst files of the training split")
    prep.add_argument("--vocab_size", type=int, default=32000)
    prep.add_argument("--tokenizer_chars", type=int, default=20_000_000, help="characters the tokenizer trains on")
    for name, job in (("train", train), ("steptime", steptime), ("report", report)):
        q = sub.add_parser(name, help=job.__doc__.split("\n")[0] if job.__doc__ else name)
        q.add_argument("--data", type=Path, required=True, help="the folder `prepare --out` wrote")
        q.add_argument("--plan", type=Path, default=DEFAULT_PLAN)
        q.add_argument("--only", default="", help="comma-separated configurations of the plan (default: all)")
        q.add_argument("--timeout", type=float, default=3600, help="seconds for one training")
    for name in ("train", "report"):
        sub.choices[name].add_argument(
            "--baseline_lr",
            type=float,
            default=None,
            help="the baseline's finals at this rate set the target (default: its best swept rate)",
        )
    train_p = sub.choices["train"]
    train_p.add_argument("--phase", choices=["sweep", "final"], required=True)
    train_p.add_argument("--seeds", default="", help="comma-separated (final phase; default: the plan's)")
    train_p.add_argument("--lr", type=float, default=None, help="final phase: this rate instead of the sweep's best")
    train_p.add_argument("--jobs", type=int, default=1, help="trainings at once on the GPU (their times do not count)")
    train_p.add_argument(
        "--stop_at_target",
        action="store_true",
        help="final phase, not the baseline: end each run once it reaches the baseline's final loss (what the "
        "report measures), instead of training all of `tokens`",
    )
    train_p.add_argument(
        "--micro_batch_size", type=int, default=None, help="instead of the plan's: memory only (the global batch stays)"
    )
    sub.choices["steptime"].add_argument("--steps", type=int, default=60)
    sub.choices["report"].add_argument("--png", type=Path, default=None)
    sub.choices["report"].add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    {"prepare": prepare, "train": train, "steptime": steptime, "report": report}[args.job](args)


if __name__ == "__main__":
    main()
