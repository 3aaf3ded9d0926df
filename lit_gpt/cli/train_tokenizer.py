"""Train a small SentencePiece BPE tokenizer, by default on the sample corpus shipped with the package
(see lit_gpt/data/tokenizer_training.py).

    lit-train-tokenizer --out_dir checkpoints/sample_tokenizer      # or: python scripts/train_tokenizer.py ...
"""

from __future__ import annotations

import os
from pathlib import Path

from jsonargparse import CLI

from lit_gpt.cli.shipped import demo_data


def train_sample_tokenizer(
    out_dir: Path,
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
        slimpajama_dir: folder searched recursively for `.jsonl.zst` files (SlimPajama layout; default: the
            shipped sample's slimpajama/train).
        starcoder_dir: folder searched recursively for `.parquet` files (Starcoderdata layout; default: the
            shipped sample's starcoder).
        vocab_size: number of pieces, including the 3 special tokens and the 256 byte-fallback pieces.
        max_chars: cap on the characters fed to the trainer (keeps training fast).
        max_piece_chars: longest training piece; longer documents are cut at line ends.
        num_threads: trainer threads.
    """
    from lit_gpt.data.tokenizer_training import train_tokenizer

    if slimpajama_dir is None or starcoder_dir is None:
        sample = demo_data("sample")
        slimpajama_dir = slimpajama_dir or sample / "slimpajama" / "train"
        starcoder_dir = starcoder_dir or sample / "starcoder"
    train_tokenizer(
        Path(out_dir), Path(slimpajama_dir), Path(starcoder_dir), vocab_size, max_chars, max_piece_chars, num_threads
    )


def main(argv=None) -> None:
    """`lit-train-tokenizer` and `scripts/train_tokenizer.py`: a bad option ends in one line, exit 2."""
    from lit_gpt.exit_codes import run_command

    run_command(lambda: CLI(train_sample_tokenizer, as_positional=False, args=argv))


if __name__ == "__main__":
    main()
