"""Tokenization throughput per core: the prepare pipeline vs a naive one-document-at-a-time loop.

Both run in this single process on the sample corpus (SlimPajama train + validation, Starcoder) with
the same tokenizer (`--kind`: the sample SentencePiece model, a Llama-2-shaped one, or a byte-level BPE
`tokenizer.json`; or `--tokenizer_path`), alternately, `--repeats` times; the best run of each is reported
(wall time and this process's CPU time, tokens per second). The naive loop reads lines with
`json.loads`, calls the tokenizer library's `encode` per document and builds one `np.array` per document. The
pipeline is
`lit_gpt.data.prepare` with one process (reading, encoding with `encode_flat`, checking every 64th
document against SentencePiece, writing shards). Both token streams must be identical.

    python benchmarks/prepare_throughput.py [--kind llama2_shaped | --tokenizer_path DIR] 2>/dev/null  # stderr:
    progress bars
"""

from __future__ import annotations

import io
import json
import tempfile
import time
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow.parquet as pq
import sentencepiece as spm
import zstandard
from jsonargparse import CLI

from lit_gpt.cli.shipped import demo_data
from lit_gpt.data import InputLog, open_shard, prepare, read_header, read_slimpajama, read_starcoder

SAMPLE = demo_data("sample")


def naive(slim_files: list[Path], code_files: list[Path], tokenizer: Path) -> list[np.ndarray]:
    if (tokenizer / "tokenizer.model").is_file():
        sp = spm.SentencePieceProcessor(model_file=str(tokenizer / "tokenizer.model"))
        bos, eos, encode = sp.bos_id(), sp.eos_id(), sp.encode
    else:
        from tokenizers import Tokenizer as HFTokenizer

        hf = HFTokenizer.from_file(str(tokenizer / "tokenizer.json"))
        bos, eos = hf.token_to_id("<s>"), hf.token_to_id("</s>")
        encode = lambda text: hf.encode(text, add_special_tokens=False).ids  # noqa: E731
    out = []
    for path in slim_files:
        with zstandard.ZstdDecompressor().stream_reader(open(path, "rb")) as fh:
            for line in io.TextIOWrapper(fh, encoding="utf-8"):
                row = json.loads(line)
                if row["meta"]["redpajama_set_name"] != "RedPajamaGithub":
                    out.append(np.array([bos] + encode(row["text"]) + [eos], np.uint16))
    for path in code_files:
        for batch in pq.ParquetFile(path).iter_batches(columns=["content"]):
            for text in batch.column(0).to_pylist():
                out.append(np.array([bos] + encode(text) + [eos], np.uint16))
    return out


def pipeline(slim_files: list[Path], code_files: list[Path], tokenizer: Path, out: Path) -> np.ndarray:
    prepare(slim_files, SAMPLE / "slimpajama", read_slimpajama, tokenizer, out / "slim", "slim", num_processes=1)
    prepare(code_files, SAMPLE / "starcoder", read_starcoder, tokenizer, out / "code", "code", num_processes=1)
    files = sorted((out / "slim").glob("slim_*.bin")) + sorted((out / "code").glob("code_*.bin"))
    return np.concatenate([open_shard(read_header(p)) for p in files])


def timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def build_tokenizer(kind: str, out: Path) -> Path:
    """The sample tokenizer (vocab 4096), a Llama-2-shaped SentencePiece model (32,000 pieces, tied
    whitespace-run scores, byte fallback) or a GPT-2-style byte-level BPE `tokenizer.json` (32,000),
    all trained on the sample corpus."""
    from lit_gpt.data.tokenizer_training import llama2_shaped_model, train_tokenizer, training_text

    out.mkdir(parents=True)
    texts = lambda: training_text(SAMPLE / "slimpajama" / "train", SAMPLE / "starcoder", 4_000_000, 2000)  # noqa: E731
    if kind == "sample":
        train_tokenizer(out_dir=out, slimpajama_dir=SAMPLE / "slimpajama" / "train", starcoder_dir=SAMPLE / "starcoder")
    elif kind == "llama2_shaped":
        (out / "tokenizer.model").write_bytes(llama2_shaped_model(texts()))
    else:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer, hf.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
        hf.train_from_iterator(
            texts(),
            trainers.BpeTrainer(
                vocab_size=32000,
                special_tokens=["<unk>", "<s>", "</s>"],
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                show_progress=False,
            ),
        )
        hf.save(str(out / "tokenizer.json"))
    return out


def main(
    tokenizer_path: Path | None = None,
    kind: Literal["sample", "llama2_shaped", "hf_byte_level"] = "sample",
    repeats: int = 3,
) -> None:
    """Args:
    tokenizer_path: folder with `tokenizer.model` or `tokenizer.json`; default: build one of `kind`.
    kind: which tokenizer to build when no `tokenizer_path` is given (see `build_tokenizer`).
    repeats: runs of each path; the best is reported.
    """
    tmp = Path(tempfile.mkdtemp())
    tokenizer_path = tokenizer_path or build_tokenizer(kind, tmp / "tokenizer")
    slim = sorted(SAMPLE.glob("slimpajama/*/chunk*/*.jsonl.zst"))
    code = sorted(SAMPLE.glob("starcoder/*/*.parquet"))
    chars = sum(len(t) for f in slim for t in read_slimpajama(f, InputLog())) + sum(
        len(t) for f in code for t in read_starcoder(f, InputLog())
    )
    best = {"naive": (np.inf, np.inf), "pipeline": (np.inf, np.inf)}
    for r in range(repeats):
        docs, wall, cpu = timed(naive, slim, code, tokenizer_path)
        best["naive"] = min(best["naive"], (wall, cpu))
        tokens, wall, cpu = timed(pipeline, slim, code, tokenizer_path, tmp / f"run{r}")
        best["pipeline"] = min(best["pipeline"], (wall, cpu))
        assert np.array_equal(np.concatenate(docs), tokens), "the pipeline's tokens differ from the naive loop's"
    n = len(tokens)
    from lit_gpt.tokenizer import Tokenizer

    tok = Tokenizer(tokenizer_path)
    print(
        f"tokenizer: {tok.backend}, vocab {tok.vocab_size}, fast path: "
        f"{'tiktoken' if tok.fast_encoder else tok.fast_encoder_refusal}"
    )
    print(
        f"corpus: {len(docs)} documents, {chars / 1e6:.1f} M characters, {n / 1e6:.2f} M tokens (identical in both "
        "paths)"
    )
    for name, (wall, cpu) in best.items():
        print(
            f"{name:8s}: {wall:6.2f} s wall, {cpu:6.2f} s CPU, {n / wall / 1e6:.2f} M tokens/s/core (wall), "
            f"{n / cpu / 1e6:.2f} M tokens/s/core (CPU)"
        )
    speedup = best["naive"][0] / best["pipeline"][0], best["naive"][1] / best["pipeline"][1]
    print(f"speed-up per core: {speedup[0]:.2f}x (wall), {speedup[1]:.2f}x (CPU)")


if __name__ == "__main__":
    CLI(main, as_positional=False)
