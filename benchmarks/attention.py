"""One attention layer, forward and backward, at a model's shape: every kernel installed, in one process.

Times SDPA under each of its backends (cuDNN, FlashAttention-2, memory-efficient), FlexAttention
(compiled) and flash-attn-4 where installed, for plain causal attention and for the document mask at
`--doc_len` tokens per document on average (documents start at random places, as packed data has them).
`fa4-mha` is flash-attn-4 with K and V repeated to every query head before the call, the repeat and its backward
timed with it: its kernels run without grouped heads, and their backward stores dK and dV directly instead of
summing each group's in fp32.
A kernel that cannot run a case (a backend that refuses a mask, a package not installed) gets a row that
says why. TFLOP/s counts the work the mask leaves: 3.5 x 4 * B * H * D * (the sum of len^2/2 over the
documents), forward plus backward. Under the table, the count of the mask's work in flash-attn-4's tiles and
blocks (also printed where there is no GPU); `--profile` adds the GPU time of each kernel flash-attn-4's rows
launch. Prints a table last; `--json` keeps the rows.

    python benchmarks/attention.py                        # tiny_LLaMA_1b: B 16, T 2048, 32/4 heads of 64
    python benchmarks/attention.py --batch 8 --doc_len 300
    python benchmarks/attention.py --kernels fa4,fa4-mha --profile
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def document_starts(batch: int, seq_len: int, doc_len: int, seed: int = 0):
    """A (B, T) boolean tensor, True where a document starts: position 0 of every row, then each position
    with probability 1/doc_len."""
    import torch

    g = torch.Generator().manual_seed(seed)
    starts = torch.rand(batch, seq_len, generator=g) < 1 / doc_len
    starts[:, 0] = True
    return starts


def document_lengths(starts) -> list[int]:
    """The length of every document, row by row (a row's first position always starts one)."""
    import torch

    flat = torch.cat([starts.flatten().nonzero().flatten(), torch.tensor([starts.numel()])])
    return flat.diff().tolist()


def causal_pairs(starts) -> int:
    """The (query, key) pairs causal attention within documents computes: sum of n(n+1)/2 over documents."""
    return sum(n * (n + 1) // 2 for n in document_lengths(starts))


# flash-attn-4's Hopper tiles at head size 64 and below (4.0.0b36), (query rows, keys): forward, backward
FA4_FWD_TILE, FA4_BWD_TILE = (192, 128), (128, 128)


def fa4_tiles(lengths: list[int], q_heads_per_kv: int, fwd_tile=FA4_FWD_TILE, bwd_tile=FA4_BWD_TILE) -> tuple[int, int]:
    """The (query block, key block) tiles flash-attn-4's Hopper kernels visit for causal attention within
    documents of these lengths: (forward tiles per KV head, backward tiles per query head). The defaults are its
    tiles at head size 64 and below: the forward packs a KV group's query heads into the rows of a
    192-row block, the backward takes each query head on its own in 128 x 128 tiles. A tile the mask cuts
    through costs as much as a whole one, so the tiles, not the pairs, bound what the mask can save."""
    (fm, fn), (bm, bn) = fwd_tile, bwd_tile
    forward = backward = 0
    for n in lengths:
        for block in range(-(-n * q_heads_per_kv // fm)):
            last_query = min(n, -(-(block + 1) * fm // q_heads_per_kv))
            forward += -(-last_query // fn)
        for key_block in range(-(-n // bn)):
            backward += -(-n // bm) - key_block * bn // bm
    return forward, backward


def fa4_blocks(
    lengths: list[int], q_heads_per_kv: int, fwd_tile=FA4_FWD_TILE, bwd_tile=FA4_BWD_TILE
) -> tuple[int, int]:
    """The blocks (one CTA each) that visit `fa4_tiles`' tiles: (forward blocks per KV head, each a block of query
    rows; backward blocks per query head, each a block of keys). A block pays its start and its store however few
    tiles it visits."""
    forward = sum(-(-n * q_heads_per_kv // fwd_tile[0]) for n in lengths)
    backward = sum(-(-n // bwd_tile[1]) for n in lengths)
    return forward, backward


def count_lines(starts, q_heads_per_kv: int) -> list[str]:
    """What the document mask leaves of causal attention's work: pairs, then flash-attn-4's tiles and blocks."""
    B, T = starts.shape
    lengths = document_lengths(starts)
    pairs = causal_pairs(starts) / (B * T * (T + 1) // 2)
    (ft, bt), (cft, cbt) = fa4_tiles(lengths, q_heads_per_kv), fa4_tiles([T] * B, q_heads_per_kv)
    (fb, bb), (cfb, cbb) = fa4_blocks(lengths, q_heads_per_kv), fa4_blocks([T] * B, q_heads_per_kv)
    return [
        f"the document mask leaves {pairs:.1%} of the causal pairs; of flash-attn-4's Hopper tiles (head size <= 64)"
        f" {ft / cft:.1%} forward, {bt / cbt:.1%} backward",
        f"and runs {fb / cfb:.1%} of its forward blocks, {bb / cbb:.1%} of its backward ones, visiting"
        f" {ft / fb:.1f} and {bt / bb:.1f} tiles each where causal visits {cft / cfb:.1f} and {cbt / cbb:.1f}",
    ]


def time_ms(fn, warmup: int, iters: int) -> float:
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(begin.elapsed_time(end))
    return statistics.median(times)


def kernels(q, k, v, starts, bos_id: int = 1):
    """name -> (case, a function computing forward and backward), for every kernel and both cases."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.flex_attention import flex_attention

    from lit_gpt.attention import Segments, document_segments, fa4_attention
    from lit_gpt.model import causal_block_mask, document_causal_mask

    T = q.size(2)
    group = q.size(1) // k.size(1)
    grouped = group > 1
    grad = torch.randn_like(q)
    idx = torch.where(starts, bos_id, bos_id + 1).to(q.device)
    dense_mask = document_causal_mask(idx, bos_id, flex=False)
    block_mask = document_causal_mask(idx, bos_id, flex=True)
    causal_block = causal_block_mask(T, q.device)
    flex = torch.compile(flex_attention, dynamic=False)
    # flash-attn-4 takes (B, T, heads, D)
    qt, kt, vt = (t.detach().transpose(1, 2).contiguous().requires_grad_() for t in (q, k, v))
    grad_t = grad.transpose(1, 2).contiguous()

    def sdpa(backend, mask):
        def step():
            with sdpa_kernel(backend):
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=grouped)
            torch.autograd.grad(y, (q, k, v), grad)

        return step

    def flex_step(mask):
        return lambda: torch.autograd.grad(flex(q, k, v, block_mask=mask, enable_gqa=grouped), (q, k, v), grad)

    def fa4_step(segments_of, repeat_kv: bool):
        def step():
            k_, v_ = (t.repeat_interleave(group, dim=2) for t in (kt, vt)) if repeat_kv else (kt, vt)
            return torch.autograd.grad(fa4_attention(qt, k_, v_, segments_of()), (qt, kt, vt), grad_t)

        return step

    backends = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash2": SDPBackend.FLASH_ATTENTION}
    backends["efficient"] = SDPBackend.EFFICIENT_ATTENTION
    out = {}
    for name, backend in backends.items():
        out[f"sdpa-{name}"] = {"causal": sdpa(backend, None), "document": sdpa(backend, dense_mask)}
    out["flex"] = {"causal": flex_step(causal_block), "document": flex_step(block_mask)}
    # the segments are found in every step, as the model does
    segments = {"causal": lambda: Segments(None, T), "document": lambda: document_segments(idx, bos_id)}
    out["fa4"] = {case: fa4_step(find, False) for case, find in segments.items()}
    if grouped:
        out["fa4-mha"] = {case: fa4_step(find, True) for case, find in segments.items()}
    return out


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_name", default="tiny_LLaMA_1b", help="the heads and head size come from this preset")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq_len", type=int, default=2048)
    p.add_argument("--doc_len", type=int, default=512, help="mean document length of the document-mask case")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--kernels", default=None, help="comma-separated kernels to time (default: every one)")
    p.add_argument("--profile", action="store_true", help="GPU time by kernel of flash-attn-4's rows")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    import torch

    from lit_gpt.attention import fa4_missing
    from lit_gpt.config import Config

    c = Config.from_name(args.model_name)
    B, T, D = args.batch, args.seq_len, c.head_size
    starts = document_starts(B, T, args.doc_len)
    counted = count_lines(starts, c.n_head // c.n_query_groups)
    if not torch.cuda.is_available():
        print("\n".join(counted))
        raise SystemExit("benchmarks/attention.py times CUDA kernels: no CUDA GPU here")
    device = torch.device("cuda")
    torch.manual_seed(0)
    q = torch.randn(B, c.n_head, T, D, device=device, dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(B, c.n_query_groups, T, D, device=device, dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn_like(k, requires_grad=True)
    pairs = {"causal": B * T * (T + 1) // 2, "document": causal_pairs(starts)}
    fa4_why = fa4_missing(device, torch.bfloat16)
    steps = kernels(q, k, v, starts)
    wanted = args.kernels.split(",") if args.kernels else list(steps)
    if unknown := [name for name in wanted if name not in steps]:
        p.error(f"--kernels: {', '.join(unknown)} not among {', '.join(steps)}")
    rows = []
    for name in wanted:
        for case, step in steps[name].items():
            row = dict(kernel=name, case=case, batch=B, seq_len=T, heads=f"{c.n_head}/{c.n_query_groups}")
            if name.startswith("fa4") and fa4_why:
                row["error"] = fa4_why
            else:
                try:
                    ms = time_ms(step, args.warmup, args.iters)
                    row.update(ms=round(ms, 3), tflops=round(3.5 * 4 * c.n_head * D * pairs[case] / ms / 1e9, 1))
                except Exception as e:  # a backend that refuses the case: a row that says so
                    row["error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:120]}"
                if args.profile and name.startswith("fa4") and "ms" in row:
                    from throughput import gpu_profile  # a sibling script: benchmarks/ is on the path

                    try:  # a profiler that fails costs its table, not the rows after it
                        row["kernels"] = gpu_profile(lambda i: step(), 0, 3)["top"][:8]
                    except Exception as e:
                        row["profile_error"] = f"{type(e).__name__}: {e}"[:200]
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    for r in rows:
        if "kernels" in r:
            print(f"\n{r['kernel']} {r['case']}: ms a step by kernel")
            for kernel_name, ms in r["kernels"]:
                print(f"  {ms:7.3f}  {kernel_name}")
    print(f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}, mean document length {args.doc_len}")
    print("\n".join(counted))
    print(f"{'kernel':16s} {'case':9s} {'ms':>8s} {'TFLOP/s':>8s}")
    for r in rows:
        figures = f"{r['ms']:8.3f} {r['tflops']:8.1f}" if "ms" in r else f"  {r['error']}"
        print(f"{r['kernel']:16s} {r['case']:9s} {figures}")
    return rows


if __name__ == "__main__":
    main()
