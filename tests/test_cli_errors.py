"""A user mistake in any console command ends in one line on stderr naming the option, file or field, exit
code 2 and no traceback (LIT_GPT_TRACEBACK=1 shows it). Each row is what a careless user types; most run
the command's `main(argv)` in this process, a few run it as a process of its own."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from eval_helpers import TASK
from model_helpers import random_model, tiny_config

from lit_gpt.checkpoint import save_lit_checkpoint
from lit_gpt.cli import USER_ERROR, run_training

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paths(tmp_path_factory, sp_tokenizer_dir, sample_tokenizer) -> dict[str, str]:
    """What the rows name: a plain file, garbage config files, a tiny lit checkpoint (no chat template), a
    LoRA fine-tuning checkpoint (its train state alone: enough for the commands to tell it apart), tokenizers."""
    root = tmp_path_factory.mktemp("mistakes")
    (root / "notes.txt").write_text("not a folder, not a checkpoint\n")
    (root / "garbage.yaml").write_text("]] not: [yaml\n")
    (root / "hf").mkdir()
    (root / "hf" / "config.json").write_text("{not json")
    (root / "empty").mkdir()
    model = random_model(tiny_config(vocab_size=320))
    save_lit_checkpoint(root / "ckpt", model.state_dict(), model.config, tokenizer_dir=sp_tokenizer_dir)
    lora = root / "lora" / "checkpoints" / "step-000000002"
    lora.mkdir(parents=True)
    lora_config = {"method": "lora", "lr": 2e-4, "min_lr": 2e-5, "warmup_steps": None, "max_steps": 2}
    (lora / "train_state.json").write_text(json.dumps({"step": 2, "tokens": 64, "config": lora_config}))
    (root / "lora" / "run_config.yaml").write_text(yaml.safe_dump(lora_config))
    return {
        "file": str(root / "notes.txt"),
        "garbage": str(root / "garbage.yaml"),
        "hf": str(root / "hf"),
        "empty": str(root / "empty"),
        "ckpt": str(root / "ckpt"),
        "lora": str(lora),
        "lora_run": str(root / "lora"),
        "missing": str(root / "missing"),
        "tok": str(sp_tokenizer_dir),
        "tok1024": str(sample_tokenizer),
    }


# (command module, options, what the line says); {name} is a path of `paths`, {out} a fresh folder to write
MISTAKES = [
    # a missing checkpoint
    ("serve", "", "missing --checkpoint"),
    ("convert_gguf", "--output {out}/m.gguf", "missing --checkpoint"),
    ("generate", "", "give --checkpoint"),
    ("merge_lora", "--output_dir {out}/merged", "missing --checkpoint"),
    ("convert_lit", "--output_dir {out}/hf", "missing --checkpoint"),
    ("convert_hf", "--output_dir {out}/lit", "missing --checkpoint_dir"),
    ("speculative", "--draft {ckpt}", "missing --target"),
    ("perplexity", "--text {file}", "missing --checkpoint"),
    ("evaluate", "--tasks hellaswag", "missing --checkpoint"),
    ("generate", "--checkpoint {missing}", "--checkpoint {missing}: no such file or folder"),
    ("chat", "--checkpoint {missing}", "--checkpoint {missing}: no such file or folder"),
    ("finetune", "--checkpoint {missing} --out_dir {out}/sft", "--checkpoint {missing}: no such file or folder"),
    ("simple_inference", "--prompt hi --checkpoint {ckpt}", "does not say which chat template"),
    # a path of the wrong kind
    ("pretrain", "--data_dir {file} --out_dir {out}/run", "--data_dir {file}: a file, where a folder is expected"),
    ("pretrain", "--out_dir {file}", "--out_dir {file}: a file, where a folder is expected"),
    ("pretrain", "--resume {file} --out_dir {out}/run", "--resume {file}: a file"),
    ("finetune", "--checkpoint {file} --out_dir {out}/sft", "--checkpoint {file}: a file that is not a weights file"),
    ("finetune", "--checkpoint {lora_run} --out_dir {out}/sft", "a LoRA fine-tuning run"),
    ("generate", "--checkpoint {lora}", "a LoRA fine-tuning checkpoint"),
    ("serve", "--checkpoint {lora}", "lit-merge-lora"),
    ("generate", "--checkpoint {ckpt} --tokenizer_dir {file}", "--tokenizer_dir {file}: a file"),
    ("convert_gguf", "--checkpoint {ckpt} --output {empty}", "--output {empty}: a folder, where a file is expected"),
    ("convert_lit", "--checkpoint {ckpt} --output_dir {file}", "--output_dir {file}: a file"),
    ("convert_hf", "--checkpoint_dir {file} --output_dir {out}/lit", "--checkpoint_dir {file}: a file"),
    ("merge_lora", "--checkpoint {lora} --output_dir {file}", "--output_dir {file}: a file"),
    ("merge_lora", "--checkpoint {ckpt}/lit_model.pth --output_dir {out}/m", "a file, where a folder is expected"),
    ("perplexity", "--checkpoint {ckpt} --text {empty}", "--text {empty}: a folder, where a file is expected"),
    ("evaluate", "--checkpoint {ckpt} --tasks hellaswag --include_path {file}", "--include_path {file}: a file"),
    ("speculative", "--target {ckpt} --draft {missing}", "--draft {missing}: no such file or folder"),
    ("verify_data", "--data_dir {file}", "--data_dir {file}: a file"),
    ("train_tokenizer", "--out_dir {file}", "--out_dir {file}: a file"),
    ("train_tokenizer", "--out_dir {out}/tok --inputs '[\"{missing}\"]'", "{missing}: no such file or folder"),
    ("plot_run", "--run_dir {file}", "--run_dir {file}: a file"),
    (
        "prepare_slimpajama",
        "--source_path {file} --tokenizer_path {tok} --destination_path {out}/d",
        "--source_path {file}: a file",
    ),
    (
        "prepare_starcoder",
        "--source_path {empty} --tokenizer_path {file} --destination_path {out}/d",
        "--tokenizer_path {file}: a file",
    ),
    (
        "prepare_corpus",
        "--inputs '[\"{file}\"]' --tokenizer_path {tok} --destination_path {file} --source mine",
        "--destination_path {file}: a file",
    ),
    ("pretrain", "--anneal_from {lora} --decay_steps 5 --out_dir {out}/branch", "a lora fine-tuning checkpoint"),
    # numbers out of range
    ("pretrain", "--keep_last 0 --out_dir {out}/run", "--keep_last 0 is out of range: it must be at least 1"),
    ("pretrain", "--keep_last -1 --out_dir {out}/run", "--keep_last -1 is out of range"),
    ("pretrain", "--grad_clip -1 --out_dir {out}/run", "--grad_clip -1.0 is out of range: it must be at least 0"),
    ("pretrain", "--beta2 1.0 --out_dir {out}/run", "--beta2 1.0 is out of range: it must be in [0, 1)"),
    ("pretrain", "--seed -1 --out_dir {out}/run", "--seed -1 is out of range"),
    ("pretrain", "--max_steps abc", "--max_steps abc: expected int or null"),
    ("finetune", "--checkpoint {ckpt} --keep_last 0 --out_dir {out}/sft", "--keep_last 0 is out of range"),
    ("finetune", "--checkpoint {ckpt} --lora_r 0 --method lora --out_dir {out}/sft", "lora_r must be at least 1"),
    ("finetune", "--checkpoint {ckpt} --val_fraction 1 --out_dir {out}/sft", "--val_fraction 1.0 is out of range"),
    (
        "finetune",
        "--checkpoint {ckpt} --method lora --lora_targets '[attn.q]' --out_dir {out}/sft",
        "lora_targets ['attn.q']: choose among",
    ),
    ("train_tokenizer", "--out_dir {out}/tok --vocab_size 100", "--vocab_size 100: must be more than the 259"),
    ("generate", "--checkpoint {ckpt} --max_new_tokens -1", "max_new_tokens must be >= 0"),
    ("generate", "--checkpoint {ckpt} --device gpu0", "device 'gpu0' is not one of"),
    # garbage config files
    ("pretrain", "--config {garbage}", "--config {garbage}: not a YAML file of options"),
    ("serve", "--config {garbage}", "--config {garbage}: not a YAML file of options"),
    (
        "pretrain",
        "--data_dir {empty} --tokenizer_dir {tok} --model_config {garbage} --out_dir {out}/run",
        "{garbage}: not a YAML model config",
    ),
    ("convert_lit", "--checkpoint {ckpt} --output_dir {out}/hf --model_config {garbage}", "not a YAML model config"),
    ("convert_hf", "--checkpoint_dir {hf} --output_dir {out}/lit", "config.json: not valid JSON"),
    # a model or machine that cannot do what is asked
    (
        "pretrain",
        "--data_dir {empty} --tokenizer_dir {tok1024} --model_name micro_LLaMA --train_sources '{{\"train_x\": 1}}' "
        "--accelerator cpu --out_dir {out}/run",
        "embeds 512 token ids, fewer than the 1024 of the tokenizer",
    ),
    (
        "pretrain",
        "--recipe small --data_dir {empty} --tokenizer_dir {tok} --out_dir {out}/run",
        "name the training data: --train_sources",
    ),
    ("pretrain", "--recipe small --out_dir {out}/run", "--recipe small trains on prepared shards: give --data_dir"),
    (
        "train_tokenizer",
        "--out_dir {out}/tok --inputs '[\"{file}\"]' --slimpajama_dir {empty}",
        "give --inputs (your corpus) or --slimpajama_dir/--starcoder_dir, not both",
    ),
    ("finetune", "--checkpoint {ckpt} --method qlora --accelerator cpu --out_dir {out}/sft", "needs a CUDA GPU"),
]


def _argv(options: str, paths: dict[str, str], out: Path) -> list[str]:
    import shlex

    return shlex.split(options.format(**paths, out=out))


@pytest.mark.parametrize("command, options, says", MISTAKES)
def test_a_mistake_is_one_line_and_exit_2(command, options, says, paths, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LIT_GPT_TRACEBACK", raising=False)
    main = importlib.import_module(f"lit_gpt.cli.{command}").main
    with pytest.raises(SystemExit) as stop:
        main(_argv(options, paths, tmp_path))
    err = capsys.readouterr().err
    assert stop.value.code == USER_ERROR, err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and says.format(**paths) in line, line


# The same through a process of its own, as the console commands run (`python -m lit_gpt.cli.X`).
IN_A_PROCESS = [
    ("serve", "", "missing --checkpoint"),
    ("verify_data", "--data_dir {file}", "--data_dir {file}: a file, where a folder is expected"),
    ("train_tokenizer", "--out_dir {out}/tok --vocab_size 100", "--vocab_size 100: must be more than the 259"),
]


@pytest.mark.parametrize("command, options, says", IN_A_PROCESS)
def test_the_commands_say_it_in_one_line(command, options, says, paths, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LIT_GPT_TRACEBACK", None)
    argv = [sys.executable, "-m", f"lit_gpt.cli.{command}", *_argv(options, paths, tmp_path)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == USER_ERROR, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and says.format(**paths) in line


def test_the_traceback_on_request(paths, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LIT_GPT_TRACEBACK": "1"}
    argv = [sys.executable, "-m", "lit_gpt.cli.verify_data", "--data_dir", paths["file"]]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "where a folder is expected" in proc.stderr


def test_an_unknown_task_is_named_with_the_close_ones(paths, task_dir, tmp_path, capsys, monkeypatch):
    """lm-eval's own index of some 15,000 task files takes long to build: the task folder of the tests
    stands in for it."""
    from lm_eval.tasks import TaskManager

    import lit_gpt.evaluation.periodic as periodic

    local = TaskManager(include_path=str(task_dir), include_defaults=False)
    monkeypatch.setattr(periodic, "task_manager", lambda include_path, names: local)
    monkeypatch.delenv("LIT_GPT_TRACEBACK", raising=False)
    evaluate = importlib.import_module("lit_gpt.cli.evaluate")
    with pytest.raises(SystemExit) as stop:
        evaluate.main(["--checkpoint", paths["ckpt"], "--tasks", TASK[:-1] + "x"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == USER_ERROR
    assert line.startswith(f"error: --tasks: {TASK[:-1]}x is not a task lm-eval knows (did you mean {TASK}")


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
