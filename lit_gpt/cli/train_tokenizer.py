"""Train a small SentencePiece BPE tokenizer, by default on the sample corpus shipped with the package, or on
a corpus of your own (see lit_gpt/data/tokenizer_training.py).

    lit-train-tokenizer --out_dir checkpoints/sample_tokenizer      # or: python scripts/train_tokenizer.py ...
    lit-train-tokenizer --out_dir checkpoints/mine --inputs '["/data/mine/**/*.jsonl"]'
"""

from __future__ import annotations

import os
from pathlib import Path

from lit_gpt.cli.shipped import demo_data
from lit_gpt.exit_codes import run_cli
from lit_gpt.training.option_checks import check_path


def train_sample_tokenizer(
    out_dir: Path,
    inputs: list[str] | None = None,
    text_field: str = "text",
    slimpajama_dir: Path | None = None,
    starcoder_dir: Path | None = None,
    vocab_size: int = 4096,
    max_chars: int = 4_000_000,
    max_piece_chars: int = 2000,
    num_threads: int = os.cpu_count() or 1,
) -> None:
    """Train the tokenizer and write `tokenizer.model` and `tokenizer_config.json` into `out_dir`.

    Args:
        out_dir: output folder (created).
        inputs: your own corpus, as lit-prepare-corpus takes it: files, folders (searched recursively) or
            quoted globs of .jsonl, .jsonl.gz, .jsonl.zst, .parquet, .txt and .arrow files; the first
            `max_chars` characters of its documents, in sorted file order, train the tokenizer. Without it,
            the two folders below.
        text_field: JSON field or parquet/Arrow column holding the text of `inputs`.
        slimpajama_dir: folder searched recursively for `.jsonl.zst` files (SlimPajama layout; default: the
            shipped sample's slimpajama/train).
        starcoder_dir: folder searched recursively for `.parquet` files (Starcoderdata layout; default: the
            shipped sample's starcoder).
        vocab_size: number of pieces, including the 3 special tokens and the 256 byte-fallback pieces.
        max_chars: cap on the characters fed to the trainer (keeps training fast).
        max_piece_chars: longest training piece; longer documents are cut at line ends.
        num_threads: trainer threads.
    """
    from lit_gpt.data.tokenizer_training import (
        check_training_options,
        corpus_text,
        train_tokenizer,
        write_tokenizer,
    )

    check_path("out_dir", out_dir, "output folder")
    check_path("slimpajama_dir", slimpajama_dir, "folder")
    check_path("starcoder_dir", starcoder_dir, "folder")
    check_training_options(vocab_size, max_chars, max_piece_chars, num_threads)
    if inputs is not None:
        if slimpajama_dir is not None or starcoder_dir is not None:
            raise ValueError("give --inputs (your corpus) or --slimpajama_dir/--starcoder_dir, not both")
        texts = corpus_text(inputs, text_field, max_chars, max_piece_chars)
        write_tokenizer(Path(out_dir), texts, vocab_size, max_piece_chars, num_threads)
        return
    if slimpajama_dir is None or starcoder_dir is None:
        sample = demo_data("sample")
        slimpajama_dir = slimpajama_dir or sample / "slimpajama" / "train"
        starcoder_dir = starcoder_dir or sample / "starcoder"
    train_tokenizer(
        Path(out_dir), Path(slimpajama_dir), Path(starcoder_dir), vocab_size, max_chars, max_piece_chars, num_threads
    )


def main(argv=None) -> None:
    """`lit-train-tokenizer` and `scripts/train_tokenizer.py`: a bad option ends in one line, exit 2."""
    run_cli(train_sample_tokenizer, argv)


if __name__ == "__main__":
    main()
