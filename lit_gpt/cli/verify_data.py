"""Verify prepared shards against their manifests: every listed shard present, of the recorded size, and
with the recorded SHA-256 (every byte is read: minutes per 100 GB). Exit 0 when all match, 2 naming the
first damaged or missing shard. Also says, per prefix, how many tokens training can never read: those in
no whole sample of block_size + 1 tokens (each shard's remainder).

    python scripts/verify_data.py --data_dir data/slim_star                      # every manifest there
    python scripts/verify_data.py --data_dir data/slim_star --prefixes '[train_starcoder]'
"""

from __future__ import annotations

from pathlib import Path

from lit_gpt.exit_codes import run_cli
from lit_gpt.training.option_checks import check_path

MANIFEST_SUFFIX = ".manifest.json"


def verify_data(data_dir: Path, prefixes: list[str] | None = None, block_size: int | None = None) -> int:
    """Verify the shards; return how many were verified by checksum.

    Args:
        data_dir: the folder of packed shards and their `{prefix}.manifest.json` files.
        prefixes: the shard prefixes to verify (default: every manifest in data_dir).
        block_size: the block size of the model to train, for the count of tokens it can never read
            (default: the one each manifest was prepared for, or 2048 for a manifest that records none).
    """
    from lit_gpt.data.integrity import verify_shards
    from lit_gpt.data.manifest import read_manifest
    from lit_gpt.data.shards import check_prefix, unreadable_tokens

    if block_size is not None and block_size < 1:
        raise ValueError(f"--block_size {block_size}: must be at least 1")
    for prefix in prefixes or ():
        check_prefix(prefix, "--prefixes entry")
    check_path("data_dir", data_dir, "folder")
    if prefixes is None:
        prefixes = sorted(p.name[: -len(MANIFEST_SUFFIX)] for p in Path(data_dir).glob(f"*{MANIFEST_SUFFIX}"))
        if not prefixes:
            raise FileNotFoundError(
                f"{data_dir}: no *{MANIFEST_SUFFIX} files; prepare the data with scripts/prepare_*.py"
            )
    total = 0
    for prefix in prefixes:
        manifest = read_manifest(data_dir, prefix)
        count = verify_shards(data_dir, prefix, manifest)
        sample = (block_size or manifest.get("format", {}).get("block_size") or 2048) + 1
        tokens = [entry["tokens"] for entry in manifest["shards"]]
        unread = unreadable_tokens(tokens, sample)
        print(
            f"{prefix}: {count} shard(s) match their checksums; {sum(tokens):,} tokens, {unread:,} of them in no "
            f"whole sample of block_size + 1 = {sample} tokens (never read)"
        )
        total += count
    return total


def main(argv=None) -> None:
    """`lit-verify-data` and `scripts/verify_data.py`."""
    run_cli(verify_data, argv)


if __name__ == "__main__":
    main()
