"""Single-GPU training throughput of tiny_LLaMA_1b on synthetic tokens, ours against Hugging Face.

Each configuration runs in its own process (clean allocator, an OOM costs only that row) and does the
full training step: forward, loss, backward, gradient clipping, fused AdamW. The Hugging Face
`LlamaForCausalLM` (sdpa attention, eager) of the same shape is measured in the same run as the
baseline. Prints a table last; `--json` keeps the numbers.

    python benchmarks/throughput.py                                  # the default grid
    python benchmarks/throughput.py --variants hf,triton+compile --micro_batches 8,16
    python benchmarks/throughput.py --memory_cap_gb 24 --variants triton+compile+ac --micro_batches 4,8

`--grad_accum N` takes N micro batches per optimizer step (as real runs do), for every variant alike.

A variant is `hf` or
`<kernels>[+compile|+autotune|+graph][+cdt|+notune][+fp8|+fp8row][+fp8fast][+fusedmlp][+inductorops][+ac|+ac-mlp][+docmask][+fa4|+flex|+sdpa]`:
kernels one of torch, triton, liger, quack; `compile` compiles each block (`autotune`: with mode
max-autotune-no-cudagraphs; `graph`: the whole model and its loss as one graph; `cdt`: Inductor's
coordinate-descent tuning of its generated kernels, which float8 variants get without asking, as in the
trainer; `notune`: without it); `fp8` / `fp8row` train the block linears in float8 (torchao, tensorwise /
rowwise scaling; lit_gpt.training.float8's rule, its minimum width by `--float8_min_features`); `fp8fast`:
tensorwise float8 whose gradient matmuls use cuBLAS's fast accumulation too (a probe; the recipe keeps it
for the forward only); `fusedmlp` replaces each MLP's gate and up projections by one linear of twice the
width (a probe of that layout; the model keeps two); `inductorops` keeps the kernels' fused cross-entropy
but takes torch's RMSNorm, RoPE and SwiGLU, which compiled blocks leave to Inductor to generate and fuse
with their neighbours (a probe); `ac` recomputes whole blocks in the backward pass, `ac-mlp` only their
MLPs; `docmask` keeps attention inside documents (FlexAttention unless the attention is named); `fa4`,
`flex`, `sdpa` choose the attention kernel (lit_gpt.attention; `fa4` needs flash-attn-4 installed, and takes
the document mask through its variable-length interface).
`--doc_len N` starts documents (BOS) at random places,
N tokens apart on average, in every variant's data. `--profile` adds, per configuration, the GPU time
of one step by kind of kernel (matmul, attention, Triton, optimizer, other, idle) and the 25 longest kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch


class FusedMLP(torch.nn.Module):
    """An MLP with its gate and up projections as one linear of twice the width (weights copied from
    `mlp`); SwiGLU on the two halves. One class for every block: compiled blocks then share their code."""

    def __init__(self, mlp: torch.nn.Module) -> None:
        super().__init__()
        d, h, w = mlp.fc_gate.in_features, mlp.fc_gate.out_features, mlp.fc_gate.weight
        self.fc = torch.nn.Linear(d, 2 * h, bias=False, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            self.fc.weight.copy_(torch.cat([mlp.fc_gate.weight, mlp.fc_up.weight]))
        self.proj = mlp.proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.fc(x).chunk(2, dim=-1)
        return self.proj(torch.nn.functional.silu(gate) * up)


VARIANT_FLAGS = (
    "compile",
    "autotune",
    "graph",
    "cdt",
    "notune",
    "fp8",
    "fp8row",
    "fp8fast",
    "fusedmlp",
    "inductorops",
    "ac",
    "ac-mlp",
    "docmask",
    "fa4",
    "flex",
    "sdpa",
)


def check_variant(variant: str) -> None:
    """Refuse a misspelt (or removed) variant before any configuration runs, rather than run it as another."""
    kernels, *flags = variant.split("+")
    if kernels not in ("hf", "torch", "triton", "liger", "quack"):
        raise SystemExit(f"variant {variant!r}: unknown kernels {kernels!r} (hf, torch, triton, liger, quack)")
    unknown = [f for f in flags if f not in VARIANT_FLAGS]
    if unknown:
        raise SystemExit(
            f"variant {variant!r}: unknown flag(s) {', '.join(unknown)} (known: {', '.join(VARIANT_FLAGS)})"
        )


def run_one(
    model_name: str,
    variant: str,
    micro_batch: int,
    seq_len: int,
    steps: int,
    warmup: int,
    memory_cap_gb: float | None,
    attention_backend: str | None,
    doc_len: int | None = None,
    profile: bool = False,
    grad_accum: int = 1,
    float8_min_features: int = 1024,
) -> dict:
    import torch

    from lit_gpt.config import Config
    from lit_gpt.model import GPT, flops_per_token
    from lit_gpt.training.metrics import peak_flops
    from lit_gpt.training.trainer import grad_norm_and_clip, make_optimizer

    torch.manual_seed(0)
    device = torch.device("cuda", torch.cuda.current_device())
    torch.backends.cuda.matmul.allow_tf32 = True
    if memory_cap_gb:
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(memory_cap_gb * 2**30 / total, device)
    parts = variant.split("+")
    kernels, flags = parts[0], set(parts[1:])
    config = Config.from_name(
        model_name,
        block_size=seq_len,
        kernels="torch" if kernels == "hf" else kernels,
        document_mask="docmask" in flags,
        attention=next((a for a in ("fa4", "flex", "sdpa") if a in flags), "auto"),
    )
    if kernels == "hf":
        from transformers import LlamaConfig, LlamaForCausalLM

        hf_config = LlamaConfig(
            vocab_size=config.padded_vocab_size,
            hidden_size=config.n_embd,
            intermediate_size=config.intermediate_size,
            num_hidden_layers=config.n_layer,
            num_attention_heads=config.n_head,
            num_key_value_heads=config.n_query_groups,
            max_position_embeddings=seq_len,
            rms_norm_eps=config.norm_eps,
            tie_word_embeddings=False,
            attn_implementation="sdpa",
        )
        model = LlamaForCausalLM(hf_config).to(device)

        def loss_fn(x, y):
            return model(input_ids=x, labels=y).loss  # HF shifts labels itself
    else:
        from lit_gpt.training.parallel import apply_activation_checkpointing, apply_compile

        with device:
            model = GPT(config)
        if "fusedmlp" in flags:
            for block in model.transformer.h:
                block.mlp = FusedMLP(block.mlp)
        if "inductorops" in flags:
            from types import SimpleNamespace

            from lit_gpt.ops import get_ops

            ops = SimpleNamespace(**{**vars(get_ops("torch")), "linear_cross_entropy": model.ops.linear_cross_entropy})
            for module in model.modules():
                if hasattr(module, "ops"):
                    module.ops = ops
        if flags & {"fp8", "fp8row", "fp8fast"}:
            from lit_gpt.training.float8 import convert_to_float8

            convert_to_float8(
                model,
                "rowwise" if "fp8row" in flags else "tensorwise",
                min_features=float8_min_features,
                fast_accum_backward="fp8fast" in flags,
            )
        if "ac" in flags:
            apply_activation_checkpointing(model, "block")
        if "ac-mlp" in flags:
            apply_activation_checkpointing(model, "mlp")
        if "compile" in flags or "autotune" in flags or "graph" in flags:
            # float8 variants get Inductor's kernel tuning as the trainer gives it (apply_compile's rule);
            # `cdt` asks for it in bf16 too
            apply_compile(
                model,
                mode="max-autotune-no-cudagraphs" if "autotune" in flags else None,
                whole_model="graph" in flags,
                tune_kernels=True if "cdt" in flags else False if "notune" in flags else None,
            )

        def loss_fn(x, y):
            return model(x, targets=y)

    optimizer = make_optimizer(model, lr=1e-4, weight_decay=0.1, betas=(0.9, 0.95))
    n_batches = (steps + warmup + (2 if profile else 0)) * grad_accum
    tokens = torch.randint(2, config.vocab_size, (n_batches, micro_batch, seq_len + 1), device=device)
    if doc_len:  # documents start (BOS) at random places, doc_len tokens apart on average
        tokens[torch.rand(tokens.shape, device=device) < 1 / doc_len] = config.bos_id

    def step(i: int) -> None:
        for j in range(i * grad_accum, (i + 1) * grad_accum):
            batch = tokens[j]
            x, y = batch[:, :-1], batch[:, 1:]
            if kernels == "hf":
                y = batch[:, :-1]
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = loss_fn(x, y) / grad_accum
            loss.backward()
        grad_norm_and_clip(model, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    ctx = torch.nn.attention.sdpa_kernel(_backend(attention_backend)) if attention_backend else _null()
    with ctx:
        for i in range(warmup):
            step(i)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(warmup, warmup + steps):
            step(i)
        end.record()
        torch.cuda.synchronize()
        step_s = start.elapsed_time(end) / 1000 / steps
        peak_memory = torch.cuda.max_memory_allocated() / 1e9
        breakdown = gpu_profile(step, warmup + steps, 2) if profile else None
    tps = grad_accum * micro_batch * seq_len / step_s
    peak = peak_flops(device)
    return dict(
        variant=variant,
        micro_batch=micro_batch,
        seq_len=seq_len,
        step_ms=step_s * 1000,
        tokens_per_sec=tps,
        mfu=flops_per_token(config, seq_len) * tps / peak if peak else None,
        peak_memory_gb=peak_memory,
        memory_cap_gb=memory_cap_gb,
        doc_len=doc_len,
        grad_accum=grad_accum,
        attention_backend=attention_backend,
        device=torch.cuda.get_device_name(),
        torch=torch.__version__,
        profile=breakdown,
    )


def _error_line(stderr_lines: list) -> str:
    """The exception line of a failed configuration (not the hints printed after it)."""
    for line in reversed(stderr_lines):
        if "Error" in line or "Exception" in line:
            return line.strip()[:200]
    return stderr_lines[-1][:200] if stderr_lines else "?"


def _kernel_kind(name: str) -> str:
    n = name.lower()
    if any(s in n for s in ("flash", "fmha", "attention", "attn", "cudnn")):
        return "attention"
    if any(s in n for s in ("gemm", "nvjet", "cutlass", "xmma", "_mm_", "splitk")):
        return "matmul"
    if any(s in n for s in ("adam", "multi_tensor", "foreach")):
        return "optimizer"
    if n.startswith("triton") or n.startswith("_"):
        return "triton"  # inductor's fused kernels and ours
    return "other"


def gpu_profile(step, first: int, n: int) -> dict:
    """GPU time per step by kind of kernel, the idle remainder, and the 25 longest kernels."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start.record()
        for i in range(first, first + n):
            step(i)
        end.record()
        torch.cuda.synchronize()
    wall_ms = start.elapsed_time(end) / n
    kinds: dict = {}
    per_kernel: dict = {}
    for e in prof.events():
        # record_function ranges (Optimizer.step#...) also appear on the GPU timeline: not kernels
        if e.device_type != torch.autograd.DeviceType.CUDA or getattr(e, "is_user_annotation", False) or "#" in e.name:
            continue
        ms = e.time_range.elapsed_us() / 1000 / n
        kind = _kernel_kind(e.name)
        kinds[kind] = kinds.get(kind, 0.0) + ms
        per_kernel[e.name] = per_kernel.get(e.name, 0.0) + ms
    kinds["idle"] = max(wall_ms - sum(kinds.values()), 0.0)
    top = sorted(per_kernel.items(), key=lambda kv: -kv[1])[:25]
    return dict(
        step_ms=wall_ms,
        kinds={k: round(v, 2) for k, v in kinds.items()},
        top=[(name[:160], round(ms, 3)) for name, ms in top],
    )


def _backend(name: str):
    from torch.nn.attention import SDPBackend

    return {
        "flash": SDPBackend.FLASH_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "math": SDPBackend.MATH,
    }[name]


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny_LLaMA_1b")
    p.add_argument("--seq_len", type=int, default=2048)
    p.add_argument("--variants", default="hf,torch,triton,torch+compile,triton+compile")
    p.add_argument("--micro_batches", default="8,16")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--memory_cap_gb", type=float, default=None, help="emulate a smaller card")
    p.add_argument("--attention_backend", default=None, choices=["flash", "cudnn", "efficient", "math"])
    p.add_argument("--doc_len", type=int, default=None, help="mean document length of the synthetic tokens")
    p.add_argument("--profile", action="store_true", help="GPU time by kind of kernel for each configuration")
    p.add_argument("--grad_accum", type=int, default=1, help="micro batches per optimizer step (every variant)")
    p.add_argument(
        "--float8_min_features",
        type=int,
        default=1024,
        help="fp8 variants: convert block linears at least this wide in both dimensions",
    )
    p.add_argument("--json", default=None, help="write all rows to this file")
    p.add_argument("--timeout", type=int, default=300, help="seconds per configuration")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one configuration
    args = p.parse_args()

    if args.one:
        variant, mb = args.one.rsplit(":", 1)
        row = run_one(
            args.model,
            variant,
            int(mb),
            args.seq_len,
            args.steps,
            args.warmup,
            args.memory_cap_gb,
            args.attention_backend,
            args.doc_len,
            args.profile,
            args.grad_accum,
            args.float8_min_features,
        )
        print("RESULT " + json.dumps(row), flush=True)
        return

    for variant in args.variants.split(","):
        check_variant(variant)
    rows = []
    for variant in args.variants.split(","):
        for mb in [int(m) for m in args.micro_batches.split(",")]:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                f"{variant}:{mb}",
                "--model",
                args.model,
                "--seq_len",
                str(args.seq_len),
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
            ]
            if args.memory_cap_gb:
                cmd += ["--memory_cap_gb", str(args.memory_cap_gb)]
            if args.attention_backend:
                cmd += ["--attention_backend", args.attention_backend]
            if args.doc_len:
                cmd += ["--doc_len", str(args.doc_len)]
            if args.profile:
                cmd += ["--profile"]
            if args.grad_accum > 1:
                cmd += ["--grad_accum", str(args.grad_accum)]
            cmd += ["--float8_min_features", str(args.float8_min_features)]
            t0 = time.time()
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
                if lines:
                    row = json.loads(lines[-1][7:])
                else:
                    err = out.stderr.strip().splitlines()
                    oom = any("OutOfMemory" in ln or "out of memory" in ln for ln in err)
                    row = dict(
                        variant=variant, micro_batch=mb, error="OOM" if oom else _error_line(err), stderr_tail=err[-60:]
                    )
            except subprocess.TimeoutExpired:
                row = dict(variant=variant, micro_batch=mb, error=f"timeout after {args.timeout}s")
            row["wall_s"] = round(time.time() - t0, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    base = max((r["tokens_per_sec"] for r in rows if r["variant"] == "hf" and "tokens_per_sec" in r), default=None)
    print(f"\n{'variant':28s} {'mb':>3s} {'tok/s':>9s} {'MFU':>6s} {'vs HF':>6s} {'mem GB':>7s} {'step ms':>8s}")
    for r in rows:
        if "error" in r:
            print(f"{r['variant']:28s} {r['micro_batch']:3d} {r['error']}")
            continue
        ratio = f"{r['tokens_per_sec'] / base:.2f}x" if base else "-"
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") else "-"
        print(
            f"{r['variant']:28s} {r['micro_batch']:3d} {r['tokens_per_sec']:9,.0f} {mfu:>6s} {ratio:>6s} "
            f"{r['peak_memory_gb']:7.1f} {r['step_ms']:8.1f}"
        )
    for r in rows:
        if r.get("profile"):
            prof = r["profile"]
            kinds = "  ".join(f"{k} {v:.1f}" for k, v in sorted(prof["kinds"].items(), key=lambda kv: -kv[1]))
            print(f"\n{r['variant']} mb{r['micro_batch']}: {prof['step_ms']:.1f} ms/step = {kinds}")
            for name, ms in prof["top"][:14]:
                print(f"    {ms:7.2f} ms  {name}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
