"""Speculative decoding for the models this project loads (see README.md beside this file)."""

from speculative_decoding.sampling import (
    CacheCursor,
    SpeculativeDecoder,
    SpeculativeResult,
    SpeculativeStats,
    check_same_tokenizer,
    filtered_probs,
    rollback_kv_cache,
    speculative_generate,
    verify_draft,
)

__all__ = [
    "CacheCursor",
    "SpeculativeDecoder",
    "SpeculativeResult",
    "SpeculativeStats",
    "check_same_tokenizer",
    "filtered_probs",
    "rollback_kv_cache",
    "speculative_generate",
    "verify_draft",
]
