"""Data pipeline: raw corpora -> packed token shards -> deterministic, resumable training batches."""

import importlib
from typing import Any

from lit_gpt.data.manifest import check_source, check_tokenizer, read_manifest, write_json_atomic
from lit_gpt.data.prepare import prepare
from lit_gpt.data.readers import BadInputError, InputLog, read_slimpajama, read_starcoder
from lit_gpt.data.shards import ShardError, ShardInfo, ShardWriter, open_shard, read_header, token_dtype, write_shard

# The loaders need torch: they load on first use, so that the preparation scripts (and their `--help`)
# do not wait for it.
_STREAM = (
    "Mixture",
    "ShardStream",
    "Source",
    "TrainLoader",
    "ValLoader",
    "build_train_loader",
    "build_val_loader",
    "default_num_workers",
    "find_shards",
)

__all__ = [
    "BadInputError",
    "InputLog",
    "ShardError",
    "ShardInfo",
    "ShardWriter",
    "check_source",
    "check_tokenizer",
    "open_shard",
    "prepare",
    "read_header",
    "read_manifest",
    "read_slimpajama",
    "read_starcoder",
    "token_dtype",
    "write_json_atomic",
    "write_shard",
    *_STREAM,
]


def __getattr__(name: str) -> Any:
    if name in _STREAM:
        return getattr(importlib.import_module("lit_gpt.data.stream"), name)
    raise AttributeError(f"module 'lit_gpt.data' has no attribute {name!r}")
