"""Folders prepared by TinyLlama's scripts train as they are: `{split}_{source}_{process}_{counter}.bin`
names, full-size shards, no BOS, no manifest."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from lit_gpt.data import check_source, find_shards, write_shard
from lit_gpt.training.metrics import read_metrics
from training.pretrain_helpers import losses


def write_tinyllama_folder(folder, processes=2, files_per_process=2, chunk_size=33 * 16, vocab_size=1024):
    """Shards named as TinyLlama's preparation names them, every file holding `chunk_size` random ids."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for source in ("slimpajama", "starcoder"):
        for process in range(processes):
            for counter in range(files_per_process):
                write_shard(
                    folder / f"train_{source}_{process}_{counter:010d}.bin",
                    rng.integers(3, vocab_size, chunk_size).astype(np.uint16),
                )
    return folder


def test_tinyllama_named_shards_train_with_the_default_sources(tmp_path, sample_tokenizer, model_config):
    from lit_gpt.cli.pretrain import parse_args
    from lit_gpt.cli.pretrain import pretrain_with_recipe as pretrain

    data = write_tinyllama_folder(tmp_path / "data")
    assert [s.path.name for s in find_shards(data, "train_slimpajama")][:3] == [
        "train_slimpajama_0_0000000000.bin",
        "train_slimpajama_0_0000000001.bin",
        "train_slimpajama_1_0000000000.bin",
    ]
    args = parse_args(
        [
            "--data_dir",
            str(data),
            "--tokenizer_dir",
            str(sample_tokenizer),
            "--model_config",
            str(model_config),
            "--out_dir",
            str(tmp_path / "out"),
            "--accelerator",
            "cpu",
            "--global_batch_size",
            "4",
            "--micro_batch_size",
            "2",
            "--max_steps",
            "3",
            "--warmup_steps",
            "1",
            "--log_interval",
            "1",
            "--val_prefix",
            "",
            "--eval_interval",
            "0",
            "--save_interval",
            "0",
            "--num_workers",
            "0",
            "--tensorboard",
            "false",
        ]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = pretrain(args)  # train_sources left at the recipe's train_slimpajama / train_starcoder
    said = [str(w.message) for w in caught if "manifest" in str(w.message)]
    assert len(said) == 2 and all("cannot be checked" in m and "4 of 4 files" in m for m in said)
    assert state["step"] == 3 and all(math.isfinite(v) for v in losses(tmp_path / "out").values())
    waits = [v for _, v in read_metrics(tmp_path / "out" / "metrics.csv")["data_wait_fraction"]]
    assert len(waits) == 3 and all(0 < v < 1 for v in waits)  # the time each step waited for its batches


def test_without_a_manifest_token_ids_are_checked_against_the_vocabulary(tmp_path):
    data = write_tinyllama_folder(tmp_path, vocab_size=1024)
    assert "token ids of 4 of 4 files were sampled" in check_source(
        tmp_path, "train_starcoder", {"vocab_size": 1024}, 1024
    )
    bad = np.full(33 * 16, 7, np.uint16)
    bad[200] = 1500
    write_shard(data / "train_starcoder_1_0000000001.bin", bad)
    with pytest.raises(
        ValueError, match=r"train_starcoder_1_0000000001.bin: token 200 is id 1500, outside the vocabulary of 1024"
    ):
        check_source(tmp_path, "train_starcoder", {"vocab_size": 1024}, 2048)
    assert check_source(tmp_path, "train_starcoder", None, 2048)  # the model's vocabulary when there is no tokenizer
