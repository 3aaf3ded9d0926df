"""Tokenize Starcoderdata (`{language}/train-*.parquet`, column `content`) into packed shards `{prefix}_*.bin`.

Parquet files are read in record batches, never whole. Separators: every document is written as
BOS + its tokens + EOS, documents are concatenated across the input files, and nothing is ever padded:
every shard holds whole samples of `--block_size` + 1 tokens but the last, whose final partial sample
(counted in the summary and the manifest) is the only part training never reads. Rows with empty text
are dropped and counted; unreadable files and rows without `content` are skipped and listed in
`{prefix}.manifest.json`, or stop the run with `--strict`. An interrupted run resumes where it stopped
when started again with the same arguments.

    python scripts/prepare_starcoder.py --source_path lit_gpt/cli/demo_data/sample/starcoder \
        --tokenizer_path checkpoints/tokenizer --destination_path data/packed
"""

from __future__ import annotations

import os
from pathlib import Path

from lit_gpt.data.prepare import prepare, starcoder_files, summary
from lit_gpt.data.readers import read_starcoder
from lit_gpt.exit_codes import run_cli
from lit_gpt.training.option_checks import check_path


def prepare_starcoder(
    source_path: Path,
    tokenizer_path: Path,
    destination_path: Path,
    languages: list[str] | None = None,
    prefix: str = "train_starcoder",
    chunk_size: int = 2049 * 1024,
    block_size: int = 2048,
    num_processes: int | None = os.cpu_count(),
    strict: bool = False,
) -> None:
    """Tokenize Starcoderdata.

    Args:
        source_path: Starcoderdata root with one folder per language.
        tokenizer_path: folder with `tokenizer.model` or `tokenizer.json`.
        destination_path: output folder for the shards, the manifest and the progress journal.
        languages: language folders to include; default all.
        prefix: shard name prefix (a name: letters, digits, '.', '-', '_').
        chunk_size: tokens per shard, a multiple of block_size + 1.
        block_size: the block size of the model to train (samples are block_size + 1 tokens).
        num_processes: worker processes (each input file is one unit of work).
        strict: stop at the first bad input instead of skipping and counting it.
    """
    check_path("source_path", source_path, "folder")
    check_path("tokenizer_path", tokenizer_path, "folder")
    check_path("destination_path", destination_path, "output folder")
    manifest = prepare(
        starcoder_files(source_path, languages),
        source_path,
        read_starcoder,
        tokenizer_path,
        destination_path,
        prefix,
        chunk_size,
        num_processes,
        strict,
        block_size=block_size,
    )
    print(summary(manifest))


def main(argv=None) -> None:
    """`lit-prepare-starcoder` and `scripts/prepare_starcoder.py`: a bad option or input ends in one line,
    exit 2."""
    run_cli(prepare_starcoder, argv)


if __name__ == "__main__":
    main()
