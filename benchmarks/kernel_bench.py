"""Microbenchmarks of the kernel backends at tiny_LLaMA_1b sizes (micro batch 8 x 2048 tokens).

For each op (rms_norm, add_rms_norm, rope, swiglu, linear_cross_entropy) and each variant (``torch``: the
eager reference of lit_gpt.ops; ``compile``: torch.compile of that reference; ``triton``: lit_gpt.kernels,
eager; ``triton_compile``: lit_gpt.kernels inside torch.compile; ``liger``: lit_gpt.kernels.liger, when
liger-kernel is installed; ``quack``: lit_gpt.kernels.quack, when quack-kernels is installed, its norm and
loss only, the rest being ours) it reports:

- the median time of the forward and of forward+backward as eager Python launches them
  (triton.testing.do_bench, which flushes L2 between runs). At these sizes a kernel runs for tens of
  microseconds, so these numbers include the host's launch overhead wherever that is longer
  (autograd's hop to its device thread for the backward, Triton's launcher, torch's op dispatch);
- the median time of forward+backward replayed from a CUDA graph (do_bench_cudagraph): the GPU time
  alone, from which the achieved bandwidth (over the minimal bytes of ``op_bytes``, next to the card's
  measured copy bandwidth) or, for the matmul-bound fused linear cross-entropy, TFLOP/s (next to a
  measured bf16 matmul) are computed. Variants that sync with the host cannot be captured (liger's
  fused linear cross-entropy calls .item()); their rates then come from the eager time (marked *);
- the peak memory that one forward+backward allocates beyond its inputs.

``add_rms_norm`` is a block's residual add followed by the next norm (``h = x + r``, returning the norm of
``h`` and ``h``): the model runs it as two kernels; compiled, Inductor fuses it, and quack fuses it in one
kernel (``rmsnorm(..., residual=r, prenorm=True)``). What the fusion would save is measured here first.

    python benchmarks/kernel_bench.py [--json results.json] [--ops rms_norm,swiglu] [--variants triton,torch]
    python benchmarks/kernel_bench.py --dry-run    # sizes and byte counts only; needs no GPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Inductor compiles in this process instead of a pool of worker processes, whose start-up would
# otherwise compete for the CPU with the launch-bound eager measurements that follow a compile.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import torch

OPS = ("rms_norm", "add_rms_norm", "rope", "swiglu", "linear_cross_entropy")
VARIANTS = ("triton", "triton_compile", "liger", "quack", "torch", "compile")
# the ops a comparison backend takes from a library; the rest would measure our own kernels again
LIBRARY_OPS = {"quack": ("rms_norm", "add_rms_norm", "linear_cross_entropy")}

# tiny_LLaMA_1b with a micro batch of 8 sequences of 2048 tokens
SIZES = dict(batch=8, seq=2048, n_embd=2048, n_head=32, n_kv=4, head_size=64, mlp_hidden=5632, vocab=32000)
BF16_BYTES = 2


def op_bytes(op: str, s: dict[str, int], e: int = BF16_BYTES) -> int:
    """Fewest bytes one forward + backward must read and write in device memory (e: activation bytes).

    N = batch * seq tokens. Each tensor is counted once per pass that has to touch it:
    - rms_norm  fwd reads x, writes y (+ rstd, 4N); bwd reads dy, x, rstd, writes dx; w/dw: 3 D e
                -> 5 N D e + 3 D e + 8 N
    - add_rms_norm  fwd reads x, r, writes h, y; bwd reads dy, dh, h, writes one gradient (that of x and
                of r are the same) -> 8 N D e + 3 D e + 8 N (unfused it moves 11 N D e)
    - rope      fwd reads q, k, writes q', k'; bwd reads dq', dk', writes dq, dk; cos/sin (fp32) read
                in both passes -> 4 N (Hq + Hk) hs e + 4 T hs 4
    - swiglu    fwd reads gate, up, writes y; bwd reads dy, gate, up, writes dgate, dup -> 8 N H e
    - linear_cross_entropy  reads hidden, W, targets (int64), writes grad_hidden, grad_W: logits never
                need to reach memory -> 2 (N C + V C) e + 8 N. The op is matmul-bound (6 N V C flops),
                so its line reports TFLOP/s rather than bandwidth.
    """
    N = s["batch"] * s["seq"]
    if op == "rms_norm":
        D = s["n_embd"]
        return 5 * N * D * e + 3 * D * e + 8 * N
    if op == "add_rms_norm":
        D = s["n_embd"]
        return 8 * N * D * e + 3 * D * e + 8 * N
    if op == "rope":
        hs = s["head_size"]
        return 4 * N * (s["n_head"] + s["n_kv"]) * hs * e + 4 * s["seq"] * hs * 4
    if op == "swiglu":
        return 8 * N * s["mlp_hidden"] * e
    if op == "linear_cross_entropy":
        return 2 * (N * s["n_embd"] + s["vocab"] * s["n_embd"]) * e + 8 * N
    raise ValueError(op)


def op_flops(op: str, s: dict[str, int]) -> int | None:
    """Matmul flops of forward + backward (logits, grad_hidden, grad_W), for the matmul-bound op."""
    if op != "linear_cross_entropy":
        return None
    return 3 * 2 * s["batch"] * s["seq"] * s["vocab"] * s["n_embd"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    p.add_argument("--ops", default=",".join(OPS), help=f"comma-separated subset of {','.join(OPS)}")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)}")
    p.add_argument("--batch", type=int, default=SIZES["batch"], help="sequences per micro batch")
    p.add_argument("--seq", type=int, default=SIZES["seq"], help="tokens per sequence")
    p.add_argument("--rep-ms", type=int, default=100, help="do_bench repetition time per measurement")
    p.add_argument("--dry-run", action="store_true", help="print sizes and byte counts, run nothing")
    args = p.parse_args(argv)
    args.ops = [o for o in args.ops.split(",") if o]
    args.variants = [v for v in args.variants.split(",") if v]
    for o in args.ops:
        if o not in OPS:
            p.error(f"unknown op {o!r}")
    for v in args.variants:
        if v not in VARIANTS:
            p.error(f"unknown variant {v!r}")
    return args


# ---------------------------------------------------------------- cases


def make_case(op: str, s: dict[str, int], gen: torch.Generator):
    """(inputs, leaves needing grads, output grads, function of (ops namespace) -> callable)."""
    dev, bf16 = "cuda", torch.bfloat16
    B, T = s["batch"], s["seq"]

    def randn(*shape, scale=1.0):
        return (torch.randn(shape, generator=gen, device=dev) * scale).to(bf16)

    if op == "rms_norm":
        x = randn(B, T, s["n_embd"]).requires_grad_(True)
        w = (1.0 + randn(s["n_embd"], scale=0.1)).requires_grad_(True)
        return (x, w), [x, w], [randn(B, T, s["n_embd"])], lambda ops: (lambda x, w: ops.rms_norm(x, w, 1e-5))
    if op == "add_rms_norm":
        x = randn(B, T, s["n_embd"]).requires_grad_(True)
        r = randn(B, T, s["n_embd"]).requires_grad_(True)
        w = (1.0 + randn(s["n_embd"], scale=0.1)).requires_grad_(True)
        grads = [randn(B, T, s["n_embd"]), randn(B, T, s["n_embd"])]

        def build(ops):
            if ops.name == "quack":
                from quack.rmsnorm import rmsnorm

                return lambda x, r, w: rmsnorm(x, w, residual=r, prenorm=True, eps=1e-5)

            def add_rms_norm(x, r, w):
                h = x + r
                return ops.rms_norm(h, w, 1e-5), h

            return add_rms_norm

        return (x, r, w), [x, r, w], grads, build
    if op == "rope":
        H, K, hs = s["n_head"], s["n_kv"], s["head_size"]
        qkv = randn(B, T, H + 2 * K, hs)
        # strided views, as from the fused qkv projection, made leaves so that the backward stops at
        # them (a slice's backward would add zero-filling of a qkv-sized gradient to the timing)
        q, k = qkv[:, :, :H].requires_grad_(True), qkv[:, :, H : H + K].requires_grad_(True)
        inv = 1.0 / 10000 ** (torch.arange(0, hs, 2, device=dev, dtype=torch.float32) / hs)
        angles = torch.outer(torch.arange(T, device=dev, dtype=torch.float32), inv).repeat(1, 2)
        cos, sin = angles.cos(), angles.sin()
        grads = [randn(B, T, H, hs), randn(B, T, K, hs)]
        return (q, k, cos, sin), [q, k], grads, lambda ops: ops.apply_rope
    if op == "swiglu":
        gate = randn(B, T, s["mlp_hidden"], scale=2.0).requires_grad_(True)
        up = randn(B, T, s["mlp_hidden"]).requires_grad_(True)
        return (gate, up), [gate, up], [randn(B, T, s["mlp_hidden"])], lambda ops: ops.swiglu
    if op == "linear_cross_entropy":
        N = B * T
        hidden = randn(N, s["n_embd"]).requires_grad_(True)
        weight = randn(s["vocab"], s["n_embd"], scale=0.02).requires_grad_(True)
        targets = torch.randint(0, s["vocab"], (N,), generator=gen, device=dev)
        targets[::50] = -100
        grads = [torch.ones((), device=dev)]
        return (
            (hidden, weight, targets),
            [hidden, weight],
            grads,
            lambda ops: (lambda h, w, t: ops.linear_cross_entropy(h, w, t, -100)),
        )
    raise ValueError(op)


def load_variant(variant: str):
    """The ops namespace of a variant (compile: the reference ops, compiled lazily per function)."""
    from lit_gpt import ops as ref_ops

    if variant == "torch":
        return ref_ops.TORCH_OPS
    if variant in ("triton", "triton_compile"):
        return ref_ops.get_ops("triton")
    if variant in ("liger", "quack"):
        return ref_ops.get_ops(variant)  # ImportError when the package is missing
    if variant == "compile":
        return ref_ops.TORCH_OPS
    raise ValueError(variant)


# ---------------------------------------------------------------- measuring


def measure_copy_gbps(nbytes: int = 2**30) -> float:
    from triton.testing import do_bench

    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=25, rep=200, return_mode="median")
    return 2 * nbytes / (ms * 1e-3) / 1e9  # read + write


def measure_matmul_tflops(n: int = 8192) -> float:
    from triton.testing import do_bench

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    ms = do_bench(lambda: a @ b, warmup=25, rep=200, return_mode="median")
    return 2 * n**3 / (ms * 1e-3) / 1e12


def bench_one(op: str, variant: str, s: dict[str, int], rep_ms: int) -> dict[str, object]:
    from triton.testing import do_bench, do_bench_cudagraph

    gen = torch.Generator(device="cuda")
    gen.manual_seed(0)
    inputs, leaves, grads_out, build = make_case(op, s, gen)
    fn = build(load_variant(variant))
    if variant in ("compile", "triton_compile"):
        torch._dynamo.reset()
        fn = torch.compile(fn)

    def forward():
        return fn(*inputs)

    def forward_backward():
        out = fn(*inputs)
        outs = out if isinstance(out, tuple) else (out,)
        torch.autograd.grad(outs, leaves, grads_out)

    t0 = time.perf_counter()
    forward_backward()  # compiles (triton / inductor) outside the timed region
    torch.cuda.synchronize()
    first_s = time.perf_counter() - t0

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    forward_backward()
    torch.cuda.synchronize()
    peak_extra = torch.cuda.max_memory_allocated() - base

    fwd_ms = do_bench(forward, warmup=25, rep=rep_ms, return_mode="median")
    fwd_bwd_ms = do_bench(forward_backward, warmup=25, rep=rep_ms, return_mode="median")
    graph_ms, graph_error = None, None
    try:
        graph_ms = do_bench_cudagraph(forward_backward, rep=rep_ms, return_mode="median")
    except Exception as e:  # e.g. a host sync inside the op, not allowed while capturing
        graph_error = f"{type(e).__name__}: {str(e)[:200]}"
        torch.cuda.synchronize()
    gpu_ms = graph_ms if graph_ms is not None else fwd_bwd_ms
    nbytes = op_bytes(op, s)
    flops = op_flops(op, s)
    return dict(
        op=op,
        variant=variant,
        fwd_ms=fwd_ms,
        fwd_bwd_ms=fwd_bwd_ms,
        fwd_bwd_graph_ms=graph_ms,
        graph_error=graph_error,
        min_bytes=nbytes,
        gbps=nbytes / (gpu_ms * 1e-3) / 1e9,
        tflops=None if flops is None else flops / (gpu_ms * 1e-3) / 1e12,
        rates_from="graph" if graph_ms is not None else "eager",
        peak_extra_mib=peak_extra / 2**20,
        first_call_s=first_s,
    )


def format_table(results: list[dict[str, object]], copy_gbps: float | None, mm_tflops: float | None) -> str:
    head = (
        f"{'op':<22}{'variant':<16}{'fwd ms':>8}{'f+b ms':>8}{'graph ms':>10}{'GB/s':>7}{'%copy':>7}"
        f"{'TFLOP/s':>9}{'%mm':>5}{'peak MiB':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        if "error" in r:
            lines.append(f"{r['op']:<22}{r['variant']:<16}{r['error'][:80]}")
            continue
        matmul_bound = r["tflops"] is not None
        mark = "" if r["rates_from"] == "graph" else "*"
        pct = "" if copy_gbps is None or matmul_bound else f"{100 * r['gbps'] / copy_gbps:.0f}{mark}"
        gbps = "" if matmul_bound else f"{r['gbps']:.0f}{mark}"
        tflops = f"{r['tflops']:.0f}{mark}" if matmul_bound else ""
        pct_mm = f"{100 * r['tflops'] / mm_tflops:.0f}" if matmul_bound and mm_tflops else ""
        graph = "-" if r["fwd_bwd_graph_ms"] is None else f"{r['fwd_bwd_graph_ms']:.3f}"
        lines.append(
            f"{r['op']:<22}{r['variant']:<16}{r['fwd_ms']:>8.3f}{r['fwd_bwd_ms']:>8.3f}{graph:>10}{gbps:>7}{pct:>7}"
            f"{tflops:>9}{pct_mm:>5}{r['peak_extra_mib']:>10.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    s = dict(SIZES, batch=args.batch, seq=args.seq)
    if args.dry_run:
        print(f"sizes: {s}")
        for op in args.ops:
            flops = op_flops(op, s)
            extra = f", {flops / 1e12:.2f} TFLOP" if flops else ""
            print(f"{op:<22} minimal fwd+bwd bytes {op_bytes(op, s) / 1e6:9.1f} MB{extra}")
        return 0
    if not torch.cuda.is_available():
        print("needs a CUDA GPU (use --dry-run to see the byte counts)", file=sys.stderr)
        return 2

    import triton

    t_start = time.perf_counter()
    copy_gbps = measure_copy_gbps()
    mm_tflops = measure_matmul_tflops()
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  triton {triton.__version__}")
    print(f"device-to-device copy: {copy_gbps:.0f} GB/s (read + write); bf16 matmul 8192^3: {mm_tflops:.0f} TFLOP/s")
    results: list[dict[str, object]] = []
    for op in args.ops:
        for variant in args.variants:
            if op not in LIBRARY_OPS.get(variant, OPS):
                continue
            try:
                r = bench_one(op, variant, s, args.rep_ms)
            except ImportError as e:
                r = dict(op=op, variant=variant, error=f"unavailable: {e}")
            except Exception as e:  # keep the other measurements when one variant fails
                r = dict(op=op, variant=variant, error=f"{type(e).__name__}: {e}")
            results.append(r)
            if "error" in r:
                print(f"{op:<22}{variant:<16} {r['error'][:200]}", flush=True)
            else:
                graph = "-" if r["fwd_bwd_graph_ms"] is None else f"{r['fwd_bwd_graph_ms']:.3f}"
                print(
                    f"{op:<22}{variant:<16} fwd {r['fwd_ms']:.3f} ms, fwd+bwd {r['fwd_bwd_ms']:.3f} ms, "
                    f"graph {graph} ms, peak +{r['peak_extra_mib']:.0f} MiB (first call {r['first_call_s']:.1f} s)"
                    + (f"; no graph: {r['graph_error']}" if r["graph_error"] else ""),
                    flush=True,
                )
            torch.cuda.empty_cache()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = dict(
            device=torch.cuda.get_device_name(),
            torch=torch.__version__,
            triton=triton.__version__,
            sizes=s,
            copy_gbps=copy_gbps,
            matmul_tflops=mm_tflops,
            results=results,
        )
        args.json.write_text(json.dumps(payload, indent=2))
    print(
        f"\ntotal {time.perf_counter() - t_start:.0f} s. ms: medians of eager fwd, eager fwd+bwd, fwd+bwd replayed "
        f"from a CUDA graph. GB/s (minimal bytes of op_bytes) and TFLOP/s from the graph time (* from eager); "
        f"%copy of {copy_gbps:.0f} GB/s, %mm of {mm_tflops:.0f} TFLOP/s (bf16 8192^3)"
    )
    print(format_table(results, copy_gbps, mm_tflops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
