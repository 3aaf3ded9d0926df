"""Verify prepared shards against their manifests: every listed shard present, of the recorded size, and
with the recorded SHA-256 (every byte is read: minutes per 100 GB). Exit 0 when all match, 2 naming the
first damaged or missing shard.

    python scripts/verify_data.py --data_dir data/slim_star                      # every manifest there
    python scripts/verify_data.py --data_dir data/slim_star --prefixes '[train_starcoder]'
"""

from __future__ import annotations

from pathlib import Path

from lit_gpt.exit_codes import run_cli
from lit_gpt.training.option_checks import check_path

MANIFEST_SUFFIX = ".manifest.json"


def verify_data(data_dir: Path, prefixes: list[str] | None = None) -> int:
    """Verify the shards; return how many were verified by checksum.

    Args:
        data_dir: the folder of packed shards and their `{prefix}.manifest.json` files.
        prefixes: the shard prefixes to verify (default: every manifest in data_dir).
    """
    from lit_gpt.data.integrity import verify_shards
    from lit_gpt.data.manifest import read_manifest

    check_path("data_dir", data_dir, "folder")
    if prefixes is None:
        prefixes = sorted(p.name[: -len(MANIFEST_SUFFIX)] for p in Path(data_dir).glob(f"*{MANIFEST_SUFFIX}"))
        if not prefixes:
            raise FileNotFoundError(
                f"{data_dir}: no *{MANIFEST_SUFFIX} files; prepare the data with scripts/prepare_*.py"
            )
    total = 0
    for prefix in prefixes:
        count = verify_shards(data_dir, prefix, read_manifest(data_dir, prefix))
        print(f"{prefix}: {count} shard(s) match their checksums")
        total += count
    return total


def main(argv=None) -> None:
    """`lit-verify-data` and `scripts/verify_data.py`."""
    run_cli(verify_data, argv)


if __name__ == "__main__":
    main()
