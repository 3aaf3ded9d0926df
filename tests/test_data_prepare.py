import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from data_helpers import ROOT, SAMPLE

import lit_gpt.cli.prepare_slimpajama as prepare_slimpajama_command
import lit_gpt.cli.prepare_starcoder as prepare_starcoder_command
from lit_gpt.data import (
    BadInputError,
    check_tokenizer,
    open_shard,
    prepare,
    read_header,
    read_manifest,
    read_slimpajama,
    read_starcoder,
)
from lit_gpt.tokenizer import Tokenizer


def raw_slimpajama(split="train"):
    """The sample documents read independently of the pipeline's reader."""
    texts, github = [], 0
    for path in sorted((SAMPLE / "slimpajama" / split).glob("chunk*/*.jsonl.zst")):
        with zstandard.ZstdDecompressor().stream_reader(open(path, "rb")) as fh:
            for line in io.TextIOWrapper(fh, encoding="utf-8"):
                row = json.loads(line)
                if row["meta"]["redpajama_set_name"] == "RedPajamaGithub":
                    github += 1
                else:
                    texts.append(row["text"])
    return texts, github


def shard_tokens(folder, prefix):
    return np.concatenate([open_shard(read_header(p)) for p in sorted(folder.glob(f"{prefix}_*.bin"))])


@pytest.mark.parametrize("prefix", ["train_slimpajama", "train_starcoder"])
def test_shards_decode_to_the_documents_with_separators_only(prepared_sample, sample_tokenizer, prefix):
    tok = Tokenizer(sample_tokenizer)
    if prefix == "train_slimpajama":
        texts, github = raw_slimpajama()
        assert github > 0
    else:
        texts = [
            t for p in sorted(SAMPLE.glob("starcoder/*/*.parquet")) for t in pq.read_table(p)["content"].to_pylist()
        ]
        github = 0
    tokens = shard_tokens(prepared_sample, prefix)
    expected = [i for t in texts for i in tok.encode(t, bos=True, eos=True)]  # reference SentencePiece encoder
    np.testing.assert_array_equal(tokens, expected)  # nothing else: no padding, no dropped rows
    starts = np.flatnonzero(tokens == tok.bos_id)
    assert len(starts) == len(texts)
    assert [tok.decode(seg[1:-1]) for seg in np.split(tokens, starts[1:])] == texts

    manifest = read_manifest(prepared_sample, prefix)
    assert (manifest["documents"], manifest["tokens"]) == (len(texts), len(tokens))
    assert manifest["dropped"] == ({"redpajama_set_name=RedPajamaGithub": github} if github else {})
    assert manifest["skipped"]["count"] == 0
    assert manifest["separators"]["bos_id"] == 1 and manifest["separators"]["eos_id"] == 2
    assert manifest["tokenizer"] == tok.identity()
    files = sorted(p.name for p in prepared_sample.glob(f"{prefix}_*.bin"))
    assert [s["file"] for s in manifest["shards"]] == files
    # Only the last shard of each input file may be short.
    by_unit = {}
    for s in manifest["shards"]:
        by_unit.setdefault(int(s["file"][-14:-4]) // 100_000, []).append(s["tokens"])
    assert len(by_unit) == len(manifest["sources"]["files"])
    assert all(all(n == 100_000 for n in sizes[:-1]) and 0 < sizes[-1] <= 100_000 for sizes in by_unit.values())


def test_check_tokenizer(prepared_sample, sample_tokenizer):
    manifest = read_manifest(prepared_sample, "train_starcoder")
    identity = Tokenizer(sample_tokenizer).identity()
    check_tokenizer(manifest, identity, model_vocab_size=1024)
    with pytest.raises(ValueError, match="'train_starcoder' was tokenized with another tokenizer"):
        check_tokenizer(manifest, {**identity, "sha256": "0" * 64}, model_vocab_size=32000)
    with pytest.raises(ValueError, match="vocabulary of 1024 tokens, larger than the model's padded vocabulary of 512"):
        check_tokenizer(manifest, identity, model_vocab_size=512)
    with pytest.raises(FileNotFoundError, match="train_other.manifest.json: no manifest"):
        read_manifest(prepared_sample, "train_other")


def write_zst(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zstandard.ZstdCompressor().compress(b"".join(line + b"\n" for line in lines)))


def doc(text, set_name="RedPajamaC4"):
    return json.dumps({"text": text, "meta": {"redpajama_set_name": set_name}}).encode()


@pytest.fixture
def bad_corpora(tmp_path):
    """One SlimPajama and one Starcoder tree with every kind of bad input, plus good rows."""
    slim = tmp_path / "slim"
    write_zst(
        slim / "train/chunk1/example_train_0.jsonl.zst",
        [doc("first"), b'{"text": "broken', doc("code", "RedPajamaGithub"), b'{"meta": {}}', doc("last")],
    )
    rng = np.random.default_rng(0)  # incompressible rows, so the stream spans many zstd blocks
    full = zstandard.ZstdCompressor().compress(
        b"".join(doc(" ".join(map(str, rng.integers(0, 10**9, 60)))) + b"\n" for i in range(2000))
    )
    (slim / "train/chunk1/example_train_1.jsonl.zst").write_bytes(full[: len(full) // 2])  # truncated stream
    (slim / "train/chunk2").mkdir()
    (slim / "train/chunk2/example_train_2.jsonl.zst").write_bytes(b"this is not zstd\n" * 10)
    star = tmp_path / "star" / "python"
    star.mkdir(parents=True)
    pq.write_table(pa.table({"content": ["print(1)\n", None, "x = 2\n"]}), star / "train-00000-of-00002.parquet")
    (star / "train-00001-of-00002.parquet").write_bytes(b"PAR1 garbage")
    return slim, star.parent


def test_bad_input_is_skipped_and_reported_with_file_and_line(bad_corpora, sample_tokenizer, tmp_path):
    slim, star = bad_corpora
    files = sorted((slim / "train").glob("chunk*/*.zst"))
    manifest = prepare(
        files, slim, read_slimpajama, sample_tokenizer, tmp_path / "out", "train_slimpajama", num_processes=1
    )
    skipped = {
        (os.path.basename(r["file"]), r["line"], r["reason"].split(" (")[0]) for r in manifest["skipped"]["rows"]
    }
    assert {
        ("example_train_0.jsonl.zst", 2, "invalid JSON line"),
        ("example_train_0.jsonl.zst", 4, "row without a string 'text' field"),
        ("example_train_2.jsonl.zst", 1, "corrupt zstd stream"),
    } < skipped
    truncated = [r for r in manifest["skipped"]["rows"] if r["file"].endswith("example_train_1.jsonl.zst")]
    assert len(truncated) == 1 and "truncated" in truncated[0]["reason"] and truncated[0]["line"] > 1
    assert manifest["dropped"] == {"redpajama_set_name=RedPajamaGithub": 1}
    assert manifest["documents"] == 2 + truncated[0]["line"] - 1  # the rows before the break are kept

    files = sorted(star.glob("*/*.parquet"))
    manifest = prepare(
        files, star, read_starcoder, sample_tokenizer, tmp_path / "out", "train_starcoder", num_processes=1
    )
    assert manifest["documents"] == 2 and manifest["skipped"]["count"] == 2
    rows = manifest["skipped"]["rows"]
    assert (rows[0]["file"], rows[0]["line"]) == (str(files[0]), 2) and "row without a string 'content' value" in rows[
        0
    ]["reason"]
    assert rows[1]["file"] == str(files[1]) and rows[1]["reason"].startswith("unreadable parquet file")


@pytest.mark.parametrize(
    "name, message",
    [
        ("example_train_0.jsonl.zst", ":2: invalid JSON line"),
        ("example_train_1.jsonl.zst", "corrupt zstd stream"),
        ("example_train_2.jsonl.zst", ":1: corrupt zstd stream"),
    ],
)
def test_strict_makes_bad_input_fatal(bad_corpora, sample_tokenizer, tmp_path, name, message):
    slim, _ = bad_corpora
    path = next(slim.glob(f"train/*/{name}"))
    with pytest.raises(BadInputError, match=f"{path}.*{message}"):
        prepare([path], slim, read_slimpajama, sample_tokenizer, tmp_path / "out", "x", num_processes=1, strict=True)
    assert not list((tmp_path / "out").glob("x_*.bin"))  # the failed unit left no shard behind


def test_strict_script_exits_naming_file_and_line(bad_corpora, sample_tokenizer, tmp_path):
    slim, star = bad_corpora
    run = lambda script, src: subprocess.run(  # noqa: E731
        [
            sys.executable,
            str(ROOT / "scripts" / script),
            "--source_path",
            str(src),
            "--tokenizer_path",
            str(sample_tokenizer),
            "--destination_path",
            str(tmp_path / "out"),
            "--num_processes",
            "1",
            "--strict",
            "true",
        ],
        capture_output=True,
        text=True,
    )
    out = run("prepare_slimpajama.py", slim)
    assert (
        out.returncode == 2
        and f"error: {slim}/train/chunk1/example_train_0.jsonl.zst:2: invalid JSON line" in out.stderr
    )
    out = run("prepare_starcoder.py", star)
    assert (
        out.returncode == 2
        and f"error: {star}/python/train-00000-of-00002.parquet:2: row without a string 'content' value" in out.stderr
    )


def copy_run(src, dst, prefix):
    dst.mkdir()
    for p in src.glob(f"{prefix}*"):
        shutil.copy2(p, dst / p.name)


def snapshot(folder, prefix):
    return {
        p.name: p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.name.startswith((prefix, f".{prefix}")) and "progress" not in p.name
    }


def rerun(out, sample_tokenizer, **kw):
    prepare_slimpajama_command.prepare_slimpajama(
        SAMPLE / "slimpajama", sample_tokenizer, out, chunk_size=100_000, num_processes=1, **kw
    )


def test_resume_after_a_crash_redoes_only_unfinished_units(prepared_sample, sample_tokenizer, tmp_path):
    prefix, out = "train_slimpajama", tmp_path / "out"
    copy_run(prepared_sample, out, prefix)
    reference = snapshot(out, prefix)
    journal = out / f"{prefix}.progress.jsonl"
    lines = journal.read_text().splitlines()
    assert len(lines) == 5  # config + 4 units
    # A crash: units 2 and 3 not journaled yet, one of unit 3's shards half written and renamed (as a
    # kill -9 could leave it), one of unit 2's missing, a temporary file, a torn journal line.
    journal.write_text("\n".join(lines[:3]) + '\n{"unit": 2, "docu')
    (out / f"{prefix}_0000300000.bin").write_bytes(b"LITPKDS")
    (out / f"{prefix}_0000200001.bin").unlink()
    (out / f"{prefix}_0000200009.bin").write_bytes(b"LITPKDS")
    (out / f".{prefix}_0000200002.bin.tmp").write_bytes(b"partial")
    kept = {n: os.stat(out / n).st_mtime_ns for n in reference if n.startswith(f"{prefix}_00000")}
    rerun(out, sample_tokenizer)
    assert snapshot(out, prefix) == reference  # same files, same bytes, nothing duplicated
    assert {n: os.stat(out / n).st_mtime_ns for n in kept} == kept  # finished units were not redone


def test_resume_after_an_interruption(prepared_sample, sample_tokenizer, tmp_path, monkeypatch):
    prefix, out = "train_slimpajama", tmp_path / "out"
    reference = snapshot(prepared_sample, prefix)
    script = prepare_slimpajama_command

    def interrupted(path, log):
        if path.name.endswith("_2.jsonl.zst"):
            yield from read_slimpajama(path, log)  # the unit has written shards by now
            raise KeyboardInterrupt
        yield from read_slimpajama(path, log)

    monkeypatch.setattr(script, "read_slimpajama", interrupted)
    with pytest.raises(KeyboardInterrupt):
        script.prepare_slimpajama(SAMPLE / "slimpajama", sample_tokenizer, out, chunk_size=100_000, num_processes=1)
    assert not (out / f"{prefix}.manifest.json").exists()
    assert {int(n[-14:-4]) // 100_000 for n in os.listdir(out) if n.endswith(".bin")} == {0, 1}
    monkeypatch.undo()  # the rerun reads every file
    rerun(out, sample_tokenizer)
    assert snapshot(out, prefix) == reference


def test_resume_refuses_other_settings_or_foreign_shards(prepared_sample, sample_tokenizer, tmp_path):
    prefix, out = "train_slimpajama", tmp_path / "out"
    copy_run(prepared_sample, out, prefix)
    with pytest.raises(ValueError, match="used other settings \\(changed: chunk_size\\)"):
        prepare_slimpajama_command.prepare_slimpajama(
            SAMPLE / "slimpajama", sample_tokenizer, out, chunk_size=50_000, num_processes=1
        )
    (out / f"{prefix}.progress.jsonl").unlink()
    with pytest.raises(ValueError, match="no train_slimpajama.progress.jsonl; refusing to mix runs"):
        rerun(out, sample_tokenizer)


def test_parallel_run_writes_the_same_shards(prepared_sample, sample_tokenizer, tmp_path):
    prepare_starcoder_command.prepare_starcoder(
        SAMPLE / "starcoder", sample_tokenizer, tmp_path, chunk_size=100_000, num_processes=2
    )
    assert snapshot(tmp_path, "train_starcoder") == snapshot(prepared_sample, "train_starcoder")


def test_starcoder_language_filter(sample_tokenizer, tmp_path):
    src = tmp_path / "src"
    for lang in ("python", "java"):
        (src / lang).mkdir(parents=True)
        shutil.copy(
            next(SAMPLE.glob("starcoder/python/train-00000-*.parquet")), src / lang / "train-00000-of-00001.parquet"
        )
    script = prepare_starcoder_command
    script.prepare_starcoder(src, sample_tokenizer, tmp_path / "out", languages=["java"], num_processes=1)
    assert read_manifest(tmp_path / "out", "train_starcoder")["sources"]["files"] == [
        "java/train-00000-of-00001.parquet"
    ]
    with pytest.raises(FileNotFoundError, match="no language folder \\['rust'\\]"):
        script.prepare_starcoder(src, sample_tokenizer, tmp_path / "out2", languages=["rust"])
