"""PRETRAIN.md, "A small run on your own data": a tokenizer trained on your corpus, its shards, the small
recipe, conversion and generation, each through its command (shortened to two steps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from model_helpers import _sample_lines

from lit_gpt.cli import convert_lit, generate, prepare_corpus, pretrain, train_tokenizer
from lit_gpt.cli.shipped import recipe
from lit_gpt.config import Config
from lit_gpt.tokenizer import Tokenizer


def test_a_small_run_on_your_own_data(tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "mine"
    corpus.mkdir()
    lines = _sample_lines(3000, seed=1)
    (corpus / "part.jsonl").write_text("".join(json.dumps({"text": line}) + "\n" for line in lines[:2500]))
    (corpus / "notes.txt").write_text("\n".join(lines[2500:]))
    monkeypatch.chdir(tmp_path)

    train_tokenizer.main(["--inputs", f'["{corpus}"]', "--out_dir", "tok", "--vocab_size", "512"])
    prepare_corpus.main(
        ["--inputs", f'["{corpus}"]', "--source", "mine", "--validation_fraction", "0.1"]
        + ["--tokenizer_path", "tok", "--destination_path", "data", "--num_processes", "1"]
    )
    small = ["--recipe", "small", "--data_dir", "data", "--tokenizer_dir", "tok", "--accelerator", "cpu"]
    with pytest.raises(SystemExit) as refused:  # the sources are yours to name: the prepared ones are listed
        pretrain.main(small)
    assert refused.value.code == 2
    assert "prefixes prepared in data: train_mine, validation_mine" in capsys.readouterr().err
    with pytest.raises(SystemExit) as finished:
        pretrain.main(
            small
            + ["--train_sources", '{"train_mine": 1.0}', "--val_prefix", "validation_mine", "--eval_batches", "1"]
            + ["--max_steps", "2", "--warmup_steps", "1", "--global_batch_size", "8", "--tensorboard", "false"]
        )
    assert finished.value.code == 0
    config = Config.from_file(Path("out/small/model_config.yaml"))
    assert config.name == "demo_LLaMA_5M" and config.vocab_size == Tokenizer("tok").vocab_size == 512
    run = yaml.safe_load(Path("out/small/run_config.yaml").read_text())
    unset = ("lr", "min_lr", "micro_batch_size", "eval_interval", "save_interval", "keep_last")
    assert {k: run[k] for k in unset} == {k: recipe("small")[k] for k in unset}

    capsys.readouterr()
    convert_lit.main(["--checkpoint", "out/small", "--output_dir", "hf"])
    assert (tmp_path / "hf" / "model.safetensors").is_file() and (tmp_path / "hf" / "tokenizer.model").is_file()
    generate.main(["--checkpoint", "out/small", "--prompt", "the model", "--max_new_tokens", "5"])
    assert capsys.readouterr().out.splitlines()[-1].startswith("the model")
