"""Small helpers shared by the Triton kernel wrappers.

They are plain Python on ints (no calls into triton's own helpers) so that torch.compile's Dynamo can
trace the wrappers without graph breaks.
"""

from __future__ import annotations


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


def row_warps(block: int, elems_per_thread: int = 8) -> int:
    # 8 elements per thread = one 16-byte vector load of bf16; more warps only for long rows.
    return max(1, min(16, block // (32 * elems_per_thread)))
