"""benchmarks/attention.py off the GPU: the work it counts for the document mask, and that it builds a step
for every kernel and both cases (its imports of the library are current)."""

from __future__ import annotations

import torch
from data_helpers import load_benchmark


def test_the_pairs_counted_are_those_of_each_document_alone():
    bench = load_benchmark("attention")
    starts = torch.zeros(2, 8, dtype=torch.bool)
    starts[:, 0] = starts[0, 5] = True  # documents of 5, 3 and 8 tokens
    assert bench.causal_pairs(starts) == 15 + 6 + 36
    drawn = bench.document_starts(4, 4096, 512)
    assert drawn[:, 0].all() and 4 * 4096 / 700 < drawn.sum() < 4 * 4096 / 380


def test_flash_attn_4_tiles_counted_block_by_block():
    bench = load_benchmark("attention")
    # 130 tokens, one query head a KV head: one forward block of 192 rows reaching 2 key tiles; backward, key
    # block 0 meets query blocks 0 and 1, key block 1 only query block 1
    assert bench.fa4_tiles([130], 1) == (2, 3)
    # 256 tokens, 8 query heads a KV head: 11 forward blocks of 24 tokens, those ending at 24..120 need one key
    # tile, the six ending at 144..256 two (5 + 12); backward 2 + 1
    assert bench.fa4_tiles([256], 8) == (17, 3)
    whole = bench.fa4_tiles([2048], 8)
    assert whole[1] == 16 * 17 // 2
    # eight documents of 256 where one sequence of 2,048 was: 18% of the forward tiles, 18% of the backward
    assert bench.fa4_tiles([256] * 8, 8) == (8 * 17, 8 * 3) and whole[0] == 741


def test_every_kernel_gets_both_cases():
    bench = load_benchmark("attention")
    q = torch.randn(1, 4, 128, 16)
    k, v = torch.randn(1, 2, 128, 16), torch.randn(1, 2, 128, 16)
    steps = bench.kernels(q, k, v, bench.document_starts(1, 128, 32))
    assert sorted(steps) == ["fa4", "flex", "sdpa-cudnn", "sdpa-efficient", "sdpa-flash2"]
    assert all(sorted(cases) == ["causal", "document"] for cases in steps.values())
