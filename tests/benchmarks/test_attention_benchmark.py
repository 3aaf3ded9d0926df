"""benchmarks/attention.py off the GPU: the work it counts for the document mask, and that it builds a step
for every kernel and both cases (its imports of the library are current)."""

from __future__ import annotations

import pytest
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
    # the blocks that visit them: forward 130 rows in one block of 192, backward 2 key blocks; 256 tokens of 8
    # heads, 11 forward blocks (24 tokens each) and 2 backward; 2,048 tokens, 86 and 16
    assert bench.fa4_blocks([130], 1) == (1, 2)
    assert bench.fa4_blocks([256], 8) == (11, 2) and bench.fa4_blocks([2048], 8) == (86, 16)


def test_every_kernel_gets_both_cases():
    bench = load_benchmark("attention")
    q = torch.randn(1, 4, 128, 16)
    k, v = torch.randn(1, 2, 128, 16), torch.randn(1, 2, 128, 16)
    steps = bench.kernels(q, k, v, bench.document_starts(1, 128, 32))
    assert sorted(steps) == ["fa4", "fa4-mha", "flex", "sdpa-cudnn", "sdpa-efficient", "sdpa-flash2"]
    assert all(sorted(cases) == ["causal", "document"] for cases in steps.values())
    one_kv_head_a_query_head = bench.kernels(q, q.detach(), q.detach(), bench.document_starts(1, 128, 32))
    assert "fa4-mha" not in one_kv_head_a_query_head


def test_fa4_with_kv_repeated_gives_the_gradients_of_grouped_fa4(fake_flash_attn):
    """The fa4-mha row repeats K and V to every query head before the call: the gradients of the grouped K and V
    (each group's summed through the repeat) are those of the grouped call, for both cases."""
    bench = load_benchmark("attention")
    torch.manual_seed(0)
    q = torch.randn(2, 8, 64, 16)
    k, v = torch.randn(2, 2, 64, 16), torch.randn(2, 2, 64, 16)
    steps = bench.kernels(q, k, v, bench.document_starts(2, 64, 16))
    for case in ("causal", "document"):
        grouped, repeated = steps["fa4"][case](), steps["fa4-mha"][case]()
        for a, b in zip(grouped, repeated):
            torch.testing.assert_close(b, a)
    assert fake_flash_attn == ["dense", "dense", "varlen", "varlen"]
    assert not torch.allclose(steps["fa4"]["causal"]()[1], steps["fa4"]["document"]()[1])


@pytest.mark.skipif(torch.cuda.is_available(), reason="where there is a GPU the benchmark runs instead")
def test_the_count_prints_without_a_gpu(capsys):
    bench = load_benchmark("attention")
    with pytest.raises(SystemExit, match="no CUDA GPU here"):
        bench.main(["--batch", "2", "--seq_len", "512", "--doc_len", "128"])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("the document mask leaves") and "tiles each where causal visits" in printed[1]
