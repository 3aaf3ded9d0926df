"""No token thrown away uncounted: documents are packed across input files, so a source loses at most its
last partial sample, and what training can never read is what the summary and lit-verify-data say; empty
documents are dropped and counted; sizes and names are checked before any work, in one line, exit 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from itertools import islice

import numpy as np
import pytest
from data_helpers import ROOT, SAMPLE

from lit_gpt.cli import prepare_corpus, prepare_slimpajama, prepare_starcoder, train_tokenizer, verify_data
from lit_gpt.data import InputLog, build_train_loader, open_shard, read_header, read_manifest, read_slimpajama
from lit_gpt.tokenizer import Tokenizer

BLOCK_SIZE = 127  # samples of 128 tokens


def short_text_files(folder, count=60):
    """`count` real texts of 100 to 600 characters (cut from the sample corpus), one `.txt` file each: most
    are shorter than one sample."""
    folder.mkdir()
    prose = "\n".join(read_slimpajama(next(SAMPLE.glob("slimpajama/train/chunk1/*.zst")), InputLog()))
    rng = np.random.default_rng(0)
    start = 0
    for i in range(count):
        length = int(rng.integers(100, 600))
        (folder / f"note_{i:03d}.txt").write_text("x" + prose[start : start + length])
        start += length
    return count


def summary_counts(line: str) -> tuple[int, int]:
    """(tokens, tokens never read) from a prepare command's summary line."""
    match = re.search(r"([\d,]+) tokens in \d+ shards: [\d,]+ in whole samples .*, ([\d,]+) in no whole sample", line)
    assert match, line
    return tuple(int(n.replace(",", "")) for n in match.groups())


def test_short_text_files_lose_at_most_one_partial_sample_and_it_is_counted(tmp_path, sample_tokenizer, capsys):
    files = short_text_files(tmp_path / "notes")
    out = tmp_path / "out"
    prepare_corpus.main(
        ["--inputs", str([str(tmp_path / "notes")]), "--source", "notes", "--tokenizer_path", str(sample_tokenizer)]
        + ["--destination_path", str(out), "--block_size", str(BLOCK_SIZE), "--chunk_size", str(128 * 4)]
        + ["--num_processes", "1"]
    )
    tokens, unread = summary_counts(capsys.readouterr().out.splitlines()[-1])
    assert unread < BLOCK_SIZE + 1

    # The real loader, through one epoch: every sample once.
    loader = build_train_loader(out, {"train_notes": 1.0}, block_size=BLOCK_SIZE, micro_batch_size=1, num_workers=0)
    samples = loader.dataset.sources[0].total
    read = np.concatenate([batch.numpy().ravel() for batch in islice(iter(loader), samples)])
    assert tokens == len(read) + unread
    shards = [np.asarray(open_shard(read_header(p))) for p in sorted(out.glob("train_notes_*.bin"))]
    stream = np.concatenate(shards)
    assert len(stream) == tokens and (stream == Tokenizer(sample_tokenizer).bos_id).sum() == files
    # what was read is all of it but the last shard's final partial sample, which is the one never read
    assert len(shards[-1]) % (BLOCK_SIZE + 1) == unread
    np.testing.assert_array_equal(np.sort(read), np.sort(stream[: len(stream) - unread]))

    verify_data.main(["--data_dir", str(out)])
    assert capsys.readouterr().out.splitlines() == [
        f"train_notes: {len(shards)} shard(s) match their checksums; {tokens:,} tokens, {unread:,} of them in no "
        f"whole sample of block_size + 1 = {BLOCK_SIZE + 1} tokens (never read)"
    ]
    verify_data.main(["--data_dir", str(out), "--block_size", "15"])  # for another model: each shard's remainder
    expected = sum(len(s) % 16 for s in shards)
    assert f"{expected:,} of them in no whole sample of block_size + 1 = 16 tokens" in capsys.readouterr().out


def test_empty_documents_are_dropped_and_counted(tmp_path, sample_tokenizer):
    (tmp_path / "in").mkdir()
    rows = [{"text": "a first document"}, {"text": ""}, {"text": " \n\t "}, {"text": "a second document"}]
    (tmp_path / "in" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prepare_corpus.prepare_corpus(
        [str(tmp_path / "in")], sample_tokenizer, tmp_path / "out", "mine", chunk_size=16, block_size=15
    )
    manifest = read_manifest(tmp_path / "out", "train_mine")
    assert manifest["documents"] == 2 and manifest["dropped"] == {"empty or whitespace-only text": 2}
    tok = Tokenizer(sample_tokenizer)
    stream = np.concatenate([open_shard(read_header(p)) for p in sorted((tmp_path / "out").glob("train_mine_*.bin"))])
    assert (stream == tok.bos_id).sum() == 2 and not ((stream[:-1] == tok.bos_id) & (stream[1:] == tok.eos_id)).any()


def test_a_zero_chunk_size_is_refused_at_once(tmp_path, sample_tokenizer):
    # in a process of its own: before the check, it wrote empty shards without end
    (tmp_path / "a.txt").write_text("some text")
    command = "from lit_gpt.cli.prepare_corpus import main; main()"
    args = ["--inputs", f"[{tmp_path / 'a.txt'}]", "--source", "mine", "--tokenizer_path", str(sample_tokenizer)]
    try:
        proc = subprocess.run(
            [sys.executable, "-c", command, *args, "--destination_path", str(tmp_path / "out"), "--chunk_size", "0"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("--chunk_size 0 ran for a minute")
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        "error: --chunk_size 0: must be a positive multiple of block_size + 1 = 2049 (--block_size 2048), so that "
        "every shard holds whole training samples; e.g. 2049 x 1024 = 2098176"
    ]
    assert not list(tmp_path.glob("out/*.bin"))


@pytest.mark.parametrize(
    "command, argv, message",
    [
        (prepare_slimpajama, ["--prefix", "../escaped"], "--prefix '../escaped': use letters, digits"),
        (prepare_starcoder, ["--prefix", "a/b"], "--prefix 'a/b': use letters, digits"),
        (prepare_starcoder, ["--num_processes", "0"], "--num_processes 0: must be at least 1"),
        (prepare_corpus, ["--source", "../mine"], "--source '../mine': use letters, digits"),
        (prepare_corpus, ["--chunk_size", "1000"], "--chunk_size 1000: must be a positive multiple of block_size + 1"),
        (prepare_corpus, ["--block_size", "0"], "--block_size 0: must be at least 1"),
        (prepare_corpus, ["--min_chars", "-1"], "--min_chars -1: must be 0"),
        (prepare_corpus, ["--validation_fraction", "1"], "--validation_fraction 1.0 is not in [0, 1)"),
        (verify_data, ["--block_size", "0"], "--block_size 0: must be at least 1"),
        (verify_data, ["--prefixes", "[../train]"], "--prefixes entry '../train': use letters"),
        (train_tokenizer, ["--vocab_size", "100"], "--vocab_size 100: must be more than the 259 special"),
        (train_tokenizer, ["--max_chars", "0"], "--max_chars 0: must be at least 1"),
    ],
)
def test_bad_sizes_and_names_stop_in_one_line_before_any_work(
    command, argv, message, tmp_path, sample_tokenizer, capsys
):
    out = tmp_path / "data" / "out"
    base = {
        prepare_slimpajama: ["--source_path", str(SAMPLE / "slimpajama"), "--destination_path", str(out)],
        prepare_starcoder: ["--source_path", str(SAMPLE / "starcoder"), "--destination_path", str(out)],
        prepare_corpus: ["--inputs", f"[{SAMPLE / 'starcoder'}]", "--source", "mine", "--destination_path", str(out)],
        verify_data: ["--data_dir", str(tmp_path)],
        train_tokenizer: ["--out_dir", str(out)],
    }[command]
    if command not in (verify_data, train_tokenizer):
        base += ["--tokenizer_path", str(sample_tokenizer), "--num_processes", "1"]
    with pytest.raises(SystemExit) as stop:
        command.main(base + argv)
    assert stop.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {message}"), line
    assert not (tmp_path / "data").exists()  # nothing written, inside the destination or beside it
