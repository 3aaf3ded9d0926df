"""scripts/prepare_corpus.py: every input kind, bad input counted or fatal, exact-duplicate removal,
the length filter, the validation split, resume after an interruption, and training on the result."""

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

import lit_gpt.cli.prepare_corpus as prepare_corpus_command
from lit_gpt.data import build_train_loader, open_shard, read_header, read_manifest
from lit_gpt.data.corpus import corpus_files
from lit_gpt.tokenizer import Tokenizer


def doc(i: int) -> str:
    return f"Document number {i}: the quick brown fox jumps over {i * 7} lazy dogs.\n    indented line {i}"


def jsonl(texts, extra=()):
    return "".join(json.dumps({"text": t, "id": n}) + "\n" for n, t in enumerate(texts)) + "".join(extra)


def write_corpus(root):
    """Every input kind; doc(0) repeated in three files, a short document, broken lines, empty files.
    Returns the distinct documents of at least 20 characters that must come out."""
    root.mkdir(parents=True)
    (root / "a.jsonl").write_text(
        jsonl([doc(0), doc(1), "tiny", doc(1)], extra=['{"text": broken\n', '{"other": 1}\n'])
    )
    (root / "sub").mkdir()
    with gzip.open(root / "sub" / "b.jsonl.gz", "wt") as fh:
        fh.write(jsonl([doc(2), doc(0), doc(3)]))
    (root / "sub" / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(jsonl([doc(4), doc(5)]).encode()))
    pq.write_table(pa.table({"text": [doc(6), None, doc(0), doc(7)]}), root / "d.parquet")
    (root / "e.txt").write_text(doc(8))
    (root / "empty.jsonl").write_text("")
    (root / "empty.txt").write_text("")
    (root / "notes.md").write_text("not an input kind: ignored inside folders")
    texts = [doc(9), doc(10), doc(0)]
    try:
        import datasets

        datasets.Dataset.from_dict({"text": texts}).save_to_disk(str(root / "hf_saved"))
    except ImportError:  # the same Arrow stream file save_to_disk writes
        (root / "hf_saved").mkdir()
        table = pa.table({"text": texts})
        with (
            pa.OSFile(str(root / "hf_saved" / "data-00000-of-00001.arrow"), "wb") as sink,
            pa.ipc.new_stream(sink, table.schema) as writer,
        ):
            writer.write_table(table)
    return {doc(i) for i in range(11)}


def documents(folder, prefix, tok):
    """The documents of a shard set, split at the separators (BOS ... EOS)."""
    files = sorted(folder.glob(f"{prefix}_*.bin"))
    tokens = np.concatenate([open_shard(read_header(p)) for p in files]).tolist() if files else []
    out, current = [], None
    for t in tokens:
        if t == tok.bos_id:
            assert current is None
            current = []
        elif t == tok.eos_id:
            out.append(tok.decode(current))
            current = None
        else:
            current.append(t)
    assert current is None
    return out


def run(inputs, tokenizer, dest, **kw):
    args = dict(source="mine", min_chars=20, validation_fraction=0.3, chunk_size=500, num_processes=1)
    return prepare_corpus_command.prepare_corpus(
        inputs=[str(i) for i in inputs], tokenizer_path=tokenizer, destination_path=dest, **{**args, **kw}
    )


def test_every_input_kind_deduplicated_filtered_and_split(tmp_path, sample_tokenizer):
    expected = write_corpus(tmp_path / "in")
    files, _ = corpus_files([tmp_path / "in"])
    assert sorted(p.name for p in files) == [
        "a.jsonl",
        "b.jsonl.gz",
        "c.jsonl.zst",
        "d.parquet",
        "data-00000-of-00001.arrow",
        "e.txt",
        "empty.jsonl",
        "empty.txt",
    ]
    run([tmp_path / "in"], sample_tokenizer, tmp_path / "out")
    tok = Tokenizer(sample_tokenizer)
    train, val = documents(tmp_path / "out", "train_mine", tok), documents(tmp_path / "out", "validation_mine", tok)
    assert len(train) + len(val) == len(expected) and set(train) | set(val) == expected  # each document once
    assert train and val
    manifest = read_manifest(tmp_path / "out", "train_mine")
    skipped = {
        (r["file"].rsplit("/", 1)[-1], r["line"], r["reason"].split(" (")[0]) for r in manifest["skipped"]["rows"]
    }
    assert skipped == {
        ("a.jsonl", 5, "invalid JSON line"),
        ("a.jsonl", 6, "row without a string 'text' field"),
        ("d.parquet", 2, "row without a string 'text' value"),
        ("empty.jsonl", 0, "empty file"),
        ("empty.txt", 0, "empty file"),
    }
    assert manifest["dropped"]["exact duplicate"] == 4 and manifest["dropped"]["shorter than 20 characters"] == 1
    assert (
        manifest["dropped"]["in the validation split"] == len(val)
        and manifest["settings"]["validation_fraction"] == 0.3
    )
    # The trainer mixes the new source with any other by its prefix.
    loader = build_train_loader(
        tmp_path / "out", {"train_mine": 1.0, "validation_mine": 1.0}, block_size=15, micro_batch_size=2, num_workers=0
    )
    assert next(iter(loader)).shape == (2, 16)


def test_strict_stops_at_the_first_bad_input(tmp_path, sample_tokenizer):
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.jsonl").write_text(jsonl([doc(1)], extra=["not json\n"]))
    with pytest.raises((ValueError, FileNotFoundError), match=r"a.jsonl:2: invalid JSON line"):
        run([root / "*.jsonl"], sample_tokenizer, tmp_path / "out", strict=True)
    (root / "a.jsonl").write_text(jsonl([doc(1)]))
    (root / "b.txt").write_text("")
    with pytest.raises((ValueError, FileNotFoundError), match=r"b.txt:0: empty file"):
        run([root], sample_tokenizer, tmp_path / "out2", strict=True)
    with pytest.raises((ValueError, FileNotFoundError), match="no such file"):
        run([root / "missing.jsonl"], sample_tokenizer, tmp_path / "out3")
    with pytest.raises((ValueError, FileNotFoundError), match="not ending in _<digits>"):
        run([root], sample_tokenizer, tmp_path / "out4", source="web_2")


def test_resume_after_an_interruption_writes_no_duplicates(tmp_path, sample_tokenizer, monkeypatch):
    import importlib

    prepare_module = importlib.import_module(
        "lit_gpt.data.prepare"
    )  # the package re-exports the function under that name

    for i in range(6):
        (tmp_path / "in" / f"part{i}.jsonl").parent.mkdir(exist_ok=True)
        (tmp_path / "in" / f"part{i}.jsonl").write_text(jsonl([doc(10 * i + k) for k in range(5)] + [doc(0)]))
    run([tmp_path / "in"], sample_tokenizer, tmp_path / "clean")

    real, calls = prepare_module._run_unit, []

    def interrupted(job):
        calls.append(job.unit)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(prepare_module, "_run_unit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run([tmp_path / "in"], sample_tokenizer, tmp_path / "out")
    monkeypatch.setattr(prepare_module, "_run_unit", real)
    run([tmp_path / "in"], sample_tokenizer, tmp_path / "out")
    tok = Tokenizer(sample_tokenizer)
    for prefix in ("train_mine", "validation_mine"):
        again, clean = documents(tmp_path / "out", prefix, tok), documents(tmp_path / "clean", prefix, tok)
        assert again == clean and len(set(again)) == len(again)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.bin")) == sorted(
        p.name for p in (tmp_path / "clean").glob("*.bin")
    )
    with pytest.raises((ValueError, FileNotFoundError), match="other settings"):
        run([tmp_path / "in"], sample_tokenizer, tmp_path / "out", min_chars=30)
