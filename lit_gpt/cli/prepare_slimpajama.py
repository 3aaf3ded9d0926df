"""Tokenize SlimPajama (`{split}/chunk*/example_*.jsonl.zst`) into packed shards `{prefix}_*.bin`.

Rows of the `RedPajamaGithub` subset are dropped (code comes from Starcoderdata), and so are rows with
empty text (counted). Separators: every document is written as BOS + its tokens + EOS, documents are
concatenated across the input files, and nothing is ever padded: every shard holds whole samples of
`--block_size` + 1 tokens but the last, whose final partial sample (counted in the summary and the
manifest) is the only part training never reads. Bad rows (invalid JSON, no `text`, a corrupt .zst) are
skipped and listed with file and line in `{prefix}.manifest.json`, or stop the run with `--strict`. An
interrupted run resumes where it stopped when started again with the same arguments.

    python scripts/prepare_slimpajama.py --source_path lit_gpt/cli/demo_data/sample/slimpajama \
        --tokenizer_path checkpoints/tokenizer --destination_path data/packed --split train
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from lit_gpt.data.prepare import prepare, slimpajama_files, summary
from lit_gpt.data.readers import read_slimpajama
from lit_gpt.exit_codes import run_cli
from lit_gpt.training.option_checks import check_path


def prepare_slimpajama(
    source_path: Path,
    tokenizer_path: Path,
    destination_path: Path,
    split: Literal["train", "validation", "test"] = "train",
    prefix: str | None = None,
    chunk_size: int = 2049 * 1024,
    block_size: int = 2048,
    num_processes: int | None = os.cpu_count(),
    strict: bool = False,
) -> None:
    """Tokenize one SlimPajama split.

    Args:
        source_path: SlimPajama root holding `train/`, `validation/`, `test/`.
        tokenizer_path: folder with `tokenizer.model` or `tokenizer.json`.
        destination_path: output folder for the shards, the manifest and the progress journal.
        split: which split to tokenize.
        prefix: shard name prefix (a name: letters, digits, '.', '-', '_'); default `{split}_slimpajama`.
        chunk_size: tokens per shard, a multiple of block_size + 1.
        block_size: the block size of the model to train (samples are block_size + 1 tokens).
        num_processes: worker processes (each input file is one unit of work).
        strict: stop at the first bad input instead of skipping and counting it.
    """
    check_path("source_path", source_path, "folder")
    check_path("tokenizer_path", tokenizer_path, "folder")
    check_path("destination_path", destination_path, "output folder")
    manifest = prepare(
        slimpajama_files(source_path, split),
        source_path,
        read_slimpajama,
        tokenizer_path,
        destination_path,
        prefix or f"{split}_slimpajama",
        chunk_size,
        num_processes,
        strict,
        block_size=block_size,
    )
    print(summary(manifest))


def main(argv=None) -> None:
    """`lit-prepare-slimpajama` and `scripts/prepare_slimpajama.py`: a bad option or input ends in one line,
    exit 2."""
    run_cli(prepare_slimpajama, argv)


if __name__ == "__main__":
    main()
