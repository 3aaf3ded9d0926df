"""The embedded demo's data: a sample corpus (the one shipped in lit_gpt/cli/demo_data/sample), its own
tokenizer, and packed shards."""

from __future__ import annotations

from pathlib import Path

from lit_gpt.data.manifest import manifest_path
from lit_gpt.data.prepare import prepare, slimpajama_files, starcoder_files
from lit_gpt.data.readers import read_slimpajama, read_starcoder
from lit_gpt.data.tokenizer_training import train_tokenizer

# Small shards so that even the sample corpus spreads over several files (and loader workers), of whole
# samples of the demo model's block size (demo_LLaMA_5M: 256).
DEMO_BLOCK_SIZE = 256
DEMO_CHUNK_SIZE = (DEMO_BLOCK_SIZE + 1) * 512


def prepare_sample(
    sample_dir: Path, out_dir: Path, tokenizer_dir: Path | None = None, num_processes: int = 2
) -> tuple[Path, Path]:
    """Train the sample tokenizer into `{out_dir}/tokenizer` (unless `tokenizer_dir` is given) and
    tokenize the sample into `{out_dir}/data` with the prefixes of a real run: train_slimpajama,
    validation_slimpajama, train_starcoder. Steps already done are skipped. Returns (data_dir,
    tokenizer_dir)."""
    sample_dir, out_dir = Path(sample_dir), Path(out_dir)
    if tokenizer_dir is None:
        tokenizer_dir = out_dir / "tokenizer"
        if not (tokenizer_dir / "tokenizer.model").is_file():
            train_tokenizer(
                out_dir=tokenizer_dir,
                slimpajama_dir=sample_dir / "slimpajama" / "train",
                starcoder_dir=sample_dir / "starcoder",
            )
    data_dir = out_dir / "data"
    jobs = [
        (
            "train_slimpajama",
            slimpajama_files(sample_dir / "slimpajama", "train"),
            sample_dir / "slimpajama",
            read_slimpajama,
        ),
        (
            "validation_slimpajama",
            slimpajama_files(sample_dir / "slimpajama", "validation"),
            sample_dir / "slimpajama",
            read_slimpajama,
        ),
        ("train_starcoder", starcoder_files(sample_dir / "starcoder"), sample_dir / "starcoder", read_starcoder),
    ]
    for prefix, files, root, read in jobs:
        if not manifest_path(data_dir, prefix).is_file():
            prepare(
                files,
                root,
                read,
                tokenizer_dir,
                data_dir,
                prefix,
                DEMO_CHUNK_SIZE,
                num_processes,
                block_size=DEMO_BLOCK_SIZE,
            )
    return data_dir, Path(tokenizer_dir)
