"""Bad data stops a run before or while reading it, naming the file: a listed shard deleted or cut, a
token id outside the vocabulary, a damaged manifest, a missing or mismatched tokenizer."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from lit_gpt.data import ShardError, build_train_loader, read_manifest
from lit_gpt.data.integrity import check_shards
from lit_gpt.data.shards import HEADER
from training.pretrain_helpers import short_run


@pytest.fixture
def data(tmp_path, prepared_sample):
    copy = tmp_path / "data"
    shutil.copytree(prepared_sample, copy)
    return copy


def test_the_manifest_records_sizes_and_the_run_checks_them(data):
    manifest = read_manifest(data, "train_starcoder")
    first = manifest["shards"][0]
    assert first["bytes"] == (data / first["file"]).stat().st_size == HEADER.size + 2 * first["tokens"]
    check_shards(data, "train_starcoder", manifest)
    (data / first["file"]).unlink()
    with pytest.raises(
        FileNotFoundError, match=rf"{first['file']}: listed in .*train_starcoder.manifest.json but missing"
    ):
        check_shards(data, "train_starcoder", manifest)


def test_a_deleted_shard_stops_the_run_naming_it(tmp_path, data, sample_tokenizer, model_config):
    victim = read_manifest(data, "train_slimpajama")["shards"][-1]["file"]
    (data / victim).unlink()
    with pytest.raises(FileNotFoundError, match=rf"{victim}: listed in"):
        short_run(tmp_path / "out", data, sample_tokenizer, model_config)


def test_an_id_outside_the_vocabulary_names_file_and_block(data):
    manifest = read_manifest(data, "train_starcoder")
    for entry in manifest["shards"]:
        tokens = np.memmap(data / entry["file"], dtype=np.uint16, mode="r+", offset=HEADER.size)
        tokens[:] = 2000  # a valid header, ids the 1024-token model cannot embed
        tokens.flush()
    loader = build_train_loader(
        data, {"train_starcoder": 1.0}, block_size=32, micro_batch_size=2, num_workers=0, vocab_size=1024
    )
    with pytest.raises(
        ShardError,
        match=r"train_starcoder_\d+\.bin: block \d+ holds token id 2000, outside the model's "
        r"vocabulary of 1024",
    ):
        for _ in zip(range(50), loader):
            pass


@pytest.mark.parametrize("damage", ["truncated", "no_tokenizer_key", "other_tokenizer"])
def test_a_damaged_or_foreign_manifest_stops_the_run_naming_it(tmp_path, data, sample_tokenizer, model_config, damage):
    path = data / "train_slimpajama.manifest.json"
    manifest = json.loads(path.read_text())
    if damage == "truncated":
        path.write_text(path.read_text()[:200])
    elif damage == "no_tokenizer_key":
        del manifest["tokenizer"]
        path.write_text(json.dumps(manifest))
    else:
        manifest["tokenizer"]["sha256"] = "0" * 64
        path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"train_slimpajama\.manifest\.json"):
        short_run(tmp_path / "out", data, sample_tokenizer, model_config)


def test_real_data_without_a_tokenizer_is_refused(tmp_path, data, model_config):
    with pytest.raises(
        ValueError, match=r"train_slimpajama\.manifest\.json.*pass that tokenizer's folder as --tokenizer_dir"
    ):
        short_run(tmp_path / "out", data, None, model_config)
