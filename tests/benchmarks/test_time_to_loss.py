"""benchmarks/time_to_loss.py end to end on the CPU with a micro model: prepare a corpus from a folder of
packages, sweep, train the finals, measure step times, report; the refusal of a plan larger than the corpus,
and the interpolation of the time to a loss."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest
import yaml
from data_helpers import ROOT, load_benchmark

time_to_loss = load_benchmark("time_to_loss")
trainings = load_benchmark("trainings")
hold_out, reached, time_to = time_to_loss.hold_out, time_to_loss.reached, time_to_loss.time_to

SCRIPT = ROOT / "benchmarks" / "time_to_loss.py"


def test_time_to_a_loss_is_interpolated_between_evaluations():
    curve = [(10.0, 5.0), (20.0, 4.0), (30.0, 3.0)]
    assert time_to(curve, 3.5) == pytest.approx(25.0)
    assert time_to(curve, 3.0) == pytest.approx(30.0)
    assert time_to(curve, 6.0) == 10.0  # reached at the first evaluation
    assert time_to(curve, 2.0) == math.inf


def test_whole_packages_are_held_out_by_name_not_by_content():
    sizes = {f"pkg{i}": 100 for i in range(50)} | {"huge": 10_000}
    held = hold_out(sizes, 0.1)
    assert "huge" not in held and sum(sizes[n] for n in held) <= 0.1 * sum(sizes.values())
    assert len(held) == 15 and held == hold_out(dict(reversed(sizes.items())), 0.1)


def bench(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900, cwd=ROOT / "benchmarks"
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


PLAN = dict(
    model_name="micro_LLaMA",
    global_batch_size=4,
    micro_batch_size=4,
    tokens=4 * 64 * 16,
    sweep_tokens=4 * 64 * 8,
    warmup_fraction=0.1,
    min_lr_fraction=0.1,
    eval_interval_sec=0.5,
    eval_batches=2,
    seeds=[1, 2],
    sweep_seed=1,
    baseline="adamw",
    trainer={"accelerator": "cpu", "num_workers": 0},
    configs={"adamw": {"optimizer": "adamw", "lrs": [1e-3, 3e-3]}, "muon": {"optimizer": "muon", "lrs": [3e-3]}},
)


def write_run(runs, name: str, meta: dict, curve: list[tuple[int, float, float]], tokens_per_sec: float) -> None:
    """A finished run's folder as `train` leaves it: run.json and the trainer's metrics.csv."""
    from lit_gpt.training.metrics import CSVMetricsLogger

    folder = runs / name
    logger = CSVMetricsLogger(folder)
    for step, (tokens, seconds, loss) in enumerate(curve, start=1):
        logger.log_metrics({"tokens": tokens, "train_sec": seconds, "tokens_per_sec": tokens_per_sec}, step=step)
        logger.log_metrics({"val_loss": loss, "tokens": tokens, "train_sec": seconds}, step=step)
    (folder / "run.json").write_text(json.dumps({**meta, "wall_s": curve[-1][1] + 5}))


def test_prepare_then_report_and_the_refusal_of_a_plan_larger_than_the_corpus(tmp_path):
    roots = tmp_path / "site-packages"
    for package in ("lit_gpt", "speculative_decoding", "benchmarks", "tests"):  # stand-ins: folders of sources
        shutil.copytree(ROOT / package, roots / package)
    out = tmp_path / "ttl"
    bench("prepare", "--out", str(out), "--roots", str(roots), "--vocab_size", "512", "--val_fraction", "0.2")
    corpus = json.loads((out / "corpus.json").read_text())
    assert corpus["train"]["tokens"] > 100_000 and corpus["val"]["tokens"] > 5_000
    assert (out / "data" / "train_code.manifest.json").is_file() and (out / "tokenizer" / "tokenizer.model").is_file()

    plan = {**PLAN, "tokens": 10**9}
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(plan))
    common = ("--data", str(out), "--plan", str(plan_file))
    refused = bench("train", *common, "--phase", "final", "--lr", "1e-3", check=False)
    assert refused.returncode != 0 and "readable tokens" in refused.stderr and not (out / "runs").exists()
    for phase, only in (("final", "adamw,muon"), ("sweep", "muon")):
        refused = bench("train", *common, "--phase", phase, "--only", only, "--stop_at_target", check=False)
        assert "--stop_at_target: for final runs of configurations other than the baseline (adamw)" in refused.stderr

    # two baseline seeds ending at 3.0 and 3.2 (target 3.1) in 100 s; muon reaching 3.1 at 40 and 60 s
    runs = out / "runs"
    base = dict(config="adamw", lr=1e-3, phase="final", tokens=1000, shared_gpu=False, card="NVIDIA H200")
    write_run(runs, "final_adamw_lr0.001_seed1", {**base, "seed": 1}, [(500, 50, 3.5), (1000, 100, 3.0)], 10.0)
    write_run(runs, "final_adamw_lr0.001_seed2", {**base, "seed": 2}, [(500, 50, 3.6), (1000, 100, 3.2)], 10.0)
    muon = {**base, "config": "muon", "lr": 3e-3}
    write_run(runs, "final_muon_lr0.003_seed1", {**muon, "seed": 1}, [(400, 40, 3.1), (1000, 100, 2.8)], 10.0)
    write_run(runs, "final_muon_lr0.003_seed2", {**muon, "seed": 2}, [(500, 50, 3.3), (700, 70, 2.9)], 10.0)
    # the same configuration at a rate that does not reach the target: reported beside it, not averaged in
    high = {**muon, "lr": 6e-3, "seed": 1}
    write_run(runs, "final_muon_lr0.006_seed1", high, [(500, 50, 3.4), (1000, 100, 3.2)], 10.0)
    # a check of the baseline's sweep: AdamW's final at its second-best swept rate is compared, not the target
    for lr, loss in ((1e-3, 4.0), (2e-3, 4.2)):
        write_run(runs, f"sweep_adamw_lr{lr:g}_seed1", dict(config="adamw", lr=lr), [(100, 10, loss)], 10.0)
    other = {**base, "lr": 2e-3, "seed": 1, "card": "NVIDIA H100 80GB HBM3"}  # run on another card
    write_run(runs, "final_adamw_lr0.002_seed1", other, [(500, 50, 3.3), (1000, 100, 2.9)], 10.0)
    (out / "steptime").mkdir()
    (out / "steptime" / "steptime.json").write_text(json.dumps({"adamw": 10.0, "muon": 8.0}))
    report = bench("report", *common, "--json", str(tmp_path / "r.json"), "--png", str(tmp_path / "r.png"))
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["target_val_loss"] == pytest.approx(3.1) and result["baseline_train_sec"] == pytest.approx(100)
    assert sorted(result["summary"]) == ["adamw_lr0.001", "adamw_lr0.002", "muon_lr0.003", "muon_lr0.006"]
    assert result["summary"]["adamw_lr0.002"]["wall_ratio"] == pytest.approx(0.75)  # 3.1 at 75 s of 100
    # its wall time is flagged as another card's; the runs on the baseline's card are not
    assert result["summary"]["adamw_lr0.002"]["other_card"] and not result["summary"]["muon_lr0.003"]["other_card"]
    assert "(on NVIDIA H100 80GB HBM3, not the baseline's card)" in report.stdout
    assert result["summary"]["muon_lr0.006"]["wall_ratio"] == math.inf
    # the baseline's time is its whole run, also for the seed that ends above the mean (3.2)
    assert result["summary"]["adamw_lr0.001"]["wall_ratio"] == pytest.approx(1.0)
    muon_summary = result["summary"]["muon_lr0.003"]
    assert muon_summary["seconds_spread"] == pytest.approx([40, 60])  # seed 2: halfway from 3.3 at 50 s to 2.9 at 70 s
    assert muon_summary["wall_ratio"] == pytest.approx(0.5)
    assert muon_summary["token_ratio"] == pytest.approx(0.5)  # 400 and 600 tokens against the baseline's 1000
    assert muon_summary["ratio_by_step_time"] == pytest.approx(0.5 * 10 / 8)
    assert result["runs"]["final_muon_lr0.003_seed2"]["startup_sec"] == 50  # the first logged step's time
    assert (tmp_path / "r.png").stat().st_size > 10_000 and "target" in report.stdout

    # AdamW's final at 2e-3 ended lower (2.9) than its swept best's: as the baseline, it sets a stricter target
    bench("report", *common, "--baseline_lr", "0.002", "--json", str(tmp_path / "r2.json"))
    strict = json.loads((tmp_path / "r2.json").read_text())
    assert strict["target_val_loss"] == pytest.approx(2.9) and strict["baseline_train_sec"] == pytest.approx(100)
    assert strict["summary"]["adamw_lr0.002"]["wall_ratio"] == pytest.approx(1.0)
    assert strict["summary"]["adamw_lr0.001"]["wall_ratio"] == math.inf  # its runs end at 3.0 and 3.2
    # muon seed 1 reaches 2.9 at 80 s (3.1 at 40 s, 2.8 at 100 s), seed 2 at its last evaluation, 70 s
    assert strict["summary"]["muon_lr0.003"]["seconds_spread"] == pytest.approx([70, 80])
    refused = bench("report", *common, "--baseline_lr", "0.004", check=False)
    assert refused.returncode != 0 and "--baseline_lr 0.004: no whole final run of 'adamw'" in refused.stderr


def test_the_final_runs_take_each_configurations_best_swept_rate(tmp_path):
    best_rate = time_to_loss.best_rate
    for lr, loss in ((1e-3, 3.4), (2e-3, 3.2), (4e-3, 3.3)):
        write_run(tmp_path, f"sweep_muon_lr{lr:g}_seed1", dict(config="muon", lr=lr), [(100, 10, loss)], 1.0)
    write_run(tmp_path, "sweep_muon_lr0.008_seed1", dict(config="muon", lr=8e-3), [(50, 5, 3.0)], 1.0)
    (tmp_path / "sweep_muon_lr0.008_seed1" / "run.json").unlink()  # cut off: not a point of the sweep
    assert best_rate(tmp_path, "muon") == 2e-3
    with pytest.raises(SystemExit, match="no sweep of adamw"):
        best_rate(tmp_path, "adamw")


# a stand-in for the trainer: a validation loss falling by 0.1 every 50 ms; on SIGTERM it exits with argv[1]
FAKE_TRAINER = """
import signal, sys, time
from pathlib import Path
out = Path(sys.argv[sys.argv.index("--out_dir") + 1])
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
rows = "step,val_loss\\n"
for step in range(1, 400):
    if stop:
        sys.exit(int(sys.argv[1]))
    rows += f"{step},{5 - 0.1 * step}\\n"
    (out / "metrics.csv").write_text(rows)
    time.sleep(0.05)
"""


def test_a_challenger_stops_once_it_reaches_the_target(tmp_path, monkeypatch):
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    monkeypatch.setattr(trainings, "PRETRAIN", [sys.executable, str(script)])
    from lit_gpt.exit_codes import STOPPED_AND_SAVED

    ended = {}
    seconds = trainings.run_trainings(
        {"muon": [str(STOPPED_AND_SAVED)]}, tmp_path, stop_when=reached(3.0), finished=ended.__setitem__
    )
    assert ended == seconds  # told as the run ended
    last_step = (tmp_path / "muon" / "metrics.csv").read_text().splitlines()[-1].split(",")[0]
    assert 20 <= int(last_step) < 60 and seconds["muon"] < 10  # stopped soon after step 20 (loss 3.0), not at 399
    assert reached(3.0)(tmp_path / "muon") and not reached(1.0)(tmp_path / "muon")
    assert not reached(3.0)(tmp_path / "nothing_yet")
    # a training that fails after being asked to stop is still a failure
    with pytest.raises(RuntimeError, match="muon: exit 1"):
        trainings.run_trainings({"muon": ["1"]}, tmp_path, stop_when=reached(3.0))


def test_runs_an_earlier_job_finished_are_kept_and_challengers_stop_at_the_baselines_loss(tmp_path, monkeypatch):
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(PLAN))
    runs = tmp_path / "runs"
    base = dict(config="adamw", lr=1e-3, phase="final", tokens=1000, shared_gpu=False)
    for seed, loss in ((1, 3.0), (2, 3.2)):
        write_run(runs, f"final_adamw_lr0.001_seed{seed}", {**base, "seed": seed}, [(1000, 100, loss)], 10.0)
    asked = {}

    def run_trainings(commands, out_dir, jobs, timeout, stop_when, finished):
        asked.update(commands=sorted(commands), stop_when=stop_when)
        for name in commands:
            write_run(out_dir, name, {}, [(500, 50, 3.05)], 10.0)
            (out_dir / name / "run.json").unlink()  # written by `train` as the run ends, not by the trainer
            if stop_when:  # asked while the run trains, as run_trainings does
                stop_when(out_dir / name)
            finished(name, 60.0)
        raise RuntimeError("the job is cut off after its runs ended")

    monkeypatch.setattr(time_to_loss, "run_trainings", run_trainings)
    monkeypatch.setattr(time_to_loss, "readable_tokens", lambda data, block: 10**9)
    argv = ["train", "--data", str(tmp_path), "--plan", str(plan_file), "--phase", "final", "--lr", "1e-3"]
    with pytest.raises(RuntimeError, match="cut off"):
        time_to_loss.main([*argv, "--only", "adamw"])  # both seeds are there already
    assert asked["commands"] == [] and asked["stop_when"] is None
    # an earlier job's run of it, cut off after reaching the target: not taken as this run's metrics
    write_run(runs, "final_muon_lr0.001_seed1", {}, [(900, 90, 2.0)], 10.0)
    (runs / "final_muon_lr0.001_seed1" / "run.json").unlink()
    with pytest.raises(RuntimeError, match="cut off"):  # what ended before is recorded all the same
        time_to_loss.main([*argv, "--only", "muon", "--seeds", "1", "--stop_at_target"])
    stale = runs / "cut_off" / "final_muon_lr0.001_seed1" / "metrics.csv"
    assert stale.is_file() and ",2,,,90" in stale.read_text()
    assert asked["commands"] == ["final_muon_lr0.001_seed1"]
    assert asked["stop_when"](runs / "final_muon_lr0.001_seed1")  # 3.05 is below the baseline's mean, 3.1
    meta = json.loads((runs / "final_muon_lr0.001_seed1" / "run.json").read_text())
    assert meta["stopped_at_target"] and meta["config"] == "muon" and meta["wall_s"] == 60.0
    assert meta["target"] == pytest.approx(3.1) and meta["card"] == "cpu"  # no GPU here
    # asked again for the same target: kept
    with pytest.raises(RuntimeError, match="cut off"):
        time_to_loss.main([*argv, "--only", "muon", "--seeds", "1", "--stop_at_target"])
    assert asked["commands"] == []
    # the baseline at another rate ends lower (3.0): the run stopped at 3.05 is put aside and trained again
    write_run(runs, "final_adamw_lr0.002_seed1", {**base, "lr": 2e-3, "seed": 1}, [(1000, 100, 3.0)], 10.0)
    with pytest.raises(RuntimeError, match="cut off"):
        time_to_loss.main([*argv, "--only", "muon", "--seeds", "1", "--stop_at_target", "--baseline_lr", "2e-3"])
    assert asked["commands"] == ["final_muon_lr0.001_seed1"]
    assert not asked["stop_when"](runs / "final_muon_lr0.001_seed1")  # 3.05 is above the new target
    assert (runs / "stopped_above_target" / "final_muon_lr0.001_seed1" / "run.json").is_file()
