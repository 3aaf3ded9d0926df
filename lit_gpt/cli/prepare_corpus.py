"""Tokenize your own corpus into packed shards `train_{source}_*.bin` (and `validation_{source}_*.bin`).

Inputs: files, folders (searched recursively) or globs of `.jsonl`, `.jsonl.gz`, `.jsonl.zst`,
`.parquet`, `.txt` (one document per file) and `.arrow` (a Hugging Face `datasets.save_to_disk`
folder). Documents shorter than `--min_chars` are dropped, exact duplicates too (the first copy is
kept), and `--validation_fraction` of the rest goes to the validation split. Separators, shards,
manifests, bad-input rules (`--strict`) and resuming are those of scripts/prepare_slimpajama.py; the
documents of all the files are packed together, so each prefix loses at most its last partial sample
(the summary says how many tokens that is).

    python scripts/prepare_corpus.py --inputs '["/data/mine/**/*.jsonl.zst", "/data/hf_saved"]' --source mine \
        --tokenizer_path checkpoints/tokenizer --destination_path data/packed --validation_fraction 0.001
"""

from __future__ import annotations

import os
from pathlib import Path

from lit_gpt.exit_codes import run_cli
from lit_gpt.training.option_checks import check_path


def prepare_corpus(
    inputs: list[str],
    tokenizer_path: Path,
    destination_path: Path,
    source: str,
    text_field: str = "text",
    min_chars: int = 0,
    dedup: bool = True,
    validation_fraction: float = 0.0,
    chunk_size: int = 2049 * 1024,
    block_size: int = 2048,
    num_processes: int | None = os.cpu_count(),
    strict: bool = False,
) -> None:
    """Tokenize a corpus of your own.

    Args:
        inputs: files, folders or globs (quote globs; `**` searches subfolders).
        tokenizer_path: folder with `tokenizer.model` or `tokenizer.json`.
        destination_path: output folder for the shards, the manifests and the progress journals.
        source: the source name: shards are `train_{source}_*.bin` / `validation_{source}_*.bin`,
            the prefixes to name in `--train_sources` / `--val_prefix` when training.
        text_field: JSON field or parquet/Arrow column holding the text.
        min_chars: drop documents shorter than this many characters.
        dedup: drop exact duplicates (same text), keeping the first.
        validation_fraction: share of the documents written to the validation split (0: none).
        chunk_size: tokens per shard, a multiple of block_size + 1.
        block_size: the block size of the model to train (samples are block_size + 1 tokens): shards hold
            whole samples, so training reads every token but those of each prefix's last partial sample.
        num_processes: worker processes (each input file is one unit of work).
        strict: stop at the first bad input (broken line, empty or unreadable file) instead of skipping
            and counting it.
    """
    from lit_gpt.data.corpus import prepare_corpus as prepare
    from lit_gpt.data.prepare import summary

    check_path("tokenizer_path", tokenizer_path, "folder")
    check_path("destination_path", destination_path, "output folder")
    manifests = prepare(
        inputs,
        tokenizer_path,
        destination_path,
        source,
        text_field,
        min_chars,
        dedup,
        validation_fraction,
        chunk_size,
        num_processes,
        strict,
        block_size,
    )
    for manifest in manifests.values():
        print(summary(manifest))


def main(argv=None) -> None:
    """`lit-prepare-corpus` and `scripts/prepare_corpus.py`: a bad option or input ends in one line, exit 2."""
    run_cli(prepare_corpus, argv)


if __name__ == "__main__":
    main()
