"""Single-GPU training throughput of tiny_LLaMA_1b on synthetic tokens, ours against Hugging Face.

Each configuration runs in its own process (clean allocator, an OOM costs only that row) and does the
full training step: forward, loss, backward, gradient clipping, fused AdamW. The Hugging Face
`LlamaForCausalLM` (sdpa attention, eager) of the same shape is measured in the same run as the
baseline. Prints a table last; `--json` keeps the numbers.

    python benchmarks/throughput.py                                  # the default grid
    python benchmarks/throughput.py --variants hf,triton+compile --micro_batches 8,16
    python benchmarks/throughput.py --memory_cap_gb 24 --variants triton+compile+ac --micro_batches 4,8

A variant is `hf` or `<kernels>[+compile][+ac|+ac-mlp][+gqa-expand]`: kernels one of torch, triton, liger;
`compile` compiles each block; `ac` recomputes whole blocks in the backward pass, `ac-mlp` only
their MLPs; `gqa-expand` repeats key/value heads before attention instead of `enable_gqa`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_one(model_name: str, variant: str, micro_batch: int, seq_len: int, steps: int, warmup: int,
            memory_cap_gb: float | None, attention_backend: str | None) -> dict:
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
    config = Config.from_name(model_name, block_size=seq_len, kernels="torch" if kernels == "hf" else kernels)
    if kernels == "hf":
        from transformers import LlamaConfig, LlamaForCausalLM

        hf_config = LlamaConfig(
            vocab_size=config.padded_vocab_size, hidden_size=config.n_embd, intermediate_size=config.intermediate_size,
            num_hidden_layers=config.n_layer, num_attention_heads=config.n_head,
            num_key_value_heads=config.n_query_groups, max_position_embeddings=seq_len, rms_norm_eps=config.norm_eps,
            tie_word_embeddings=False, attn_implementation="sdpa",
        )
        model = LlamaForCausalLM(hf_config).to(device)

        def loss_fn(x, y):
            return model(input_ids=x, labels=y).loss  # HF shifts labels itself
    else:
        from lit_gpt.training.parallel import apply_activation_checkpointing, apply_compile

        with device:
            model = GPT(config)
        if "gqa-expand" in flags:
            for block in model.transformer.h:
                block.attn.expand_kv_heads = True
        if "ac" in flags:
            apply_activation_checkpointing(model, "block")
        if "ac-mlp" in flags:
            apply_activation_checkpointing(model, "mlp")
        if "compile" in flags:
            apply_compile(model)

        def loss_fn(x, y):
            return model(x, targets=y)

    optimizer = make_optimizer(model, lr=1e-4, weight_decay=0.1, betas=(0.9, 0.95))
    tokens = torch.randint(0, config.vocab_size, (steps + warmup, micro_batch, seq_len + 1), device=device)

    def step(i: int) -> None:
        batch = tokens[i]
        x, y = batch[:, :-1], batch[:, 1:]
        if kernels == "hf":
            y = batch[:, :-1]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(x, y)
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
    tps = micro_batch * seq_len / step_s
    peak = peak_flops(device)
    return dict(
        variant=variant, micro_batch=micro_batch, seq_len=seq_len, step_ms=step_s * 1000, tokens_per_sec=tps,
        mfu=flops_per_token(config, seq_len) * tps / peak if peak else None,
        peak_memory_gb=torch.cuda.max_memory_allocated() / 1e9, memory_cap_gb=memory_cap_gb,
        attention_backend=attention_backend, device=torch.cuda.get_device_name(),
        torch=torch.__version__,
    )


def _backend(name: str):
    from torch.nn.attention import SDPBackend

    return {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[name]


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
    p.add_argument("--json", default=None, help="write all rows to this file")
    p.add_argument("--timeout", type=int, default=300, help="seconds per configuration")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one configuration
    args = p.parse_args()

    if args.one:
        variant, mb = args.one.rsplit(":", 1)
        row = run_one(args.model, variant, int(mb), args.seq_len, args.steps, args.warmup, args.memory_cap_gb,
                      args.attention_backend)
        print("RESULT " + json.dumps(row), flush=True)
        return

    rows = []
    for variant in args.variants.split(","):
        for mb in [int(m) for m in args.micro_batches.split(",")]:
            cmd = [sys.executable, __file__, "--one", f"{variant}:{mb}", "--model", args.model,
                   "--seq_len", str(args.seq_len), "--steps", str(args.steps), "--warmup", str(args.warmup)]
            if args.memory_cap_gb:
                cmd += ["--memory_cap_gb", str(args.memory_cap_gb)]
            if args.attention_backend:
                cmd += ["--attention_backend", args.attention_backend]
            t0 = time.time()
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
                if lines:
                    row = json.loads(lines[-1][7:])
                else:
                    err = out.stderr.strip().splitlines()
                    oom = any("OutOfMemory" in ln or "out of memory" in ln for ln in err)
                    row = dict(variant=variant, micro_batch=mb, error="OOM" if oom else (err[-1][:160] if err else "?"))
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
        print(f"{r['variant']:28s} {r['micro_batch']:3d} {r['tokens_per_sec']:9,.0f} {mfu:>6s} {ratio:>6s} "
              f"{r['peak_memory_gb']:7.1f} {r['step_ms']:8.1f}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
