"""Speculative decoding for the models this project loads (see README.md beside this file)."""

from speculative_decoding.sampling import (
    CacheCursor,
    SpeculativeDecoder,
    LoadedModel,
    SpeculativeResult,
    SpeculativeStats,
    check_same_tokenizer,
    filtered_probs,
    load_model,
    rollback_kv_cache,
    speculative_generate,
    verify_draft,
)

__all__ = [
    "CacheCursor", "LoadedModel", "SpeculativeDecoder", "SpeculativeResult", "SpeculativeStats", "check_same_tokenizer", "filtered_probs",
    "load_model", "rollback_kv_cache", "speculative_generate", "verify_draft",
]
