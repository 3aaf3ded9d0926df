"""Data-parallel scaling of training throughput: the same model on 1 and on N devices, measured in one call.

Each (mode, device count, micro batch) runs in its own `torchrun` job on synthetic tokens and does the
full training step: forward, loss, backward, gradient clipping, AdamW (fused on CUDA). Modes:

- `full`: FSDP2 (`fsdp_parallelize`) on a 1-D mesh, one shard unit per block plus the root, blocks
  resharded after forward; bf16 parameters, fp32 gradient reduction.
- `no_shard`: DDP (torch.nn.parallel.DistributedDataParallel) with bf16 autocast.
- `hybrid`: FSDP2 on a 2-D (replicate, shard) mesh: sharded within a group of `--shard_size` devices
  (default: the devices of one node), replicated across groups. On one node of 2 GPUs the default is
  (1, 2): the layout HSDP is meant for (shard over the fast intra-node links, replicate across nodes),
  which on one node costs what `full` costs; `--shard_size 1` gives (2, 1), FSDP2 used as DDP.

The table comes last; the per-device ratio compares tokens/s per device with the 1-device run of the
same mode and micro batch (the goal for `full` on 2 GPUs: at least 0.95).

    python benchmarks/scaling.py --gpus 1,2 --modes full,no_shard,hybrid --micro_batches 8
    python benchmarks/scaling.py --device cpu --model micro_LLaMA --seq_len 64 --micro_batches 2   # gloo
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MODES = ("full", "no_shard", "hybrid")


def run_one(args, mode: str, micro_batch: int) -> None:
    """One torchrun process of a measurement; rank 0 prints the result row."""
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from lit_gpt.config import Config
    from lit_gpt.model import GPT
    from lit_gpt.training.float8 import after_optimizer_step
    from lit_gpt.training.parallel import fsdp_parallelize, prepare_unsharded
    from lit_gpt.training.trainer import grad_norm_and_clip, make_optimizer

    cuda = args.device == "cuda"
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        torch.backends.cuda.matmul.allow_tf32 = True
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    torch.manual_seed(0)
    overrides = dict(block_size=args.seq_len, **({"kernels": args.kernels} if args.kernels else {}))
    config = (
        Config.from_dict({**Config.from_file(args.model).to_dict(), **overrides})
        if Path(args.model).is_file()
        else Config.from_name(args.model, **overrides)
    )
    bf16 = args.precision == "bf16-mixed"
    if mode == "no_shard":
        with device:
            model = GPT(config)
        prepare_unsharded(model, device, args.activation_checkpointing, args.compile, float8=args.float8)
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    else:
        if mode == "full":
            mesh = init_device_mesh(device.type, (world,), mesh_dim_names=("data_parallel",))
        else:
            shard = args.shard_size or int(os.environ.get("LOCAL_WORLD_SIZE", world))
            if world % shard:
                raise ValueError(f"hybrid: shard size {shard} does not divide {world} processes")
            mesh = init_device_mesh(device.type, (world // shard, shard), mesh_dim_names=("replicate", "shard"))
        with torch.device("meta"):
            model = GPT(config)
        fsdp_parallelize(
            model,
            mesh,
            mixed_precision=bf16,
            activation_checkpointing=args.activation_checkpointing,
            compile=args.compile,
            float8=args.float8,
        )
    optimizer = make_optimizer(model, lr=1e-4, weight_decay=0.1, betas=(0.9, 0.95))
    refresh_float8_scales = after_optimizer_step(model)
    # different tokens on every rank, as in real data parallelism
    gen = torch.Generator().manual_seed(rank)
    steps = args.warmup + args.steps
    tokens = torch.randint(0, config.vocab_size, (steps, micro_batch, args.seq_len + 1), generator=gen).to(device)
    # FSDP2 casts parameters itself; DDP needs autocast for bf16 compute
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and mode == "no_shard")

    def step(i: int) -> None:
        x, y = tokens[i, :, :-1], tokens[i, :, 1:]
        with autocast:
            loss = model(x, targets=y)
        loss.backward()
        grad_norm_and_clip(model, 1.0)
        optimizer.step()
        if refresh_float8_scales is not None:
            refresh_float8_scales()
        optimizer.zero_grad(set_to_none=True)

    for i in range(args.warmup):
        step(i)
    dist.barrier()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
    t0 = time.perf_counter()
    for i in range(args.warmup, steps):
        step(i)
    if cuda:
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1000
    else:
        seconds = time.perf_counter() - t0
    # the slowest rank sets the pace
    elapsed = torch.tensor([seconds], device=device)
    dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
    peak = torch.tensor([torch.cuda.max_memory_allocated() / 1e9 if cuda else _rss_gb()], device=device)
    dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    tps = micro_batch * args.seq_len * args.steps / elapsed.item() * world
    row = dict(
        mode=mode,
        gpus=world,
        micro_batch=micro_batch,
        seq_len=args.seq_len,
        model=config.name,
        float8=args.float8,
        mesh=list(mesh.shape) if mode != "no_shard" else [world],
        step_ms=elapsed.item() / args.steps * 1000,
        tokens_per_sec=tps,
        tokens_per_sec_per_gpu=tps / world,
        peak_memory_gb=peak.item(),
        device=torch.cuda.get_device_name() if cuda else "cpu",
        torch=torch.__version__,
    )
    if rank == 0:  # before the teardown, which has been seen to hang under gloo
        print("RESULT " + json.dumps(row), flush=True)
    dist.barrier()
    dist.destroy_process_group()


def _rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kilobytes on Linux


def measure(args, mode: str, gpus: int, micro_batch: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(gpus),
        __file__,
        "--one",
        f"{mode}:{micro_batch}",
    ] + _forwarded(args)
    env = {**os.environ, "NCCL_NVLS_ENABLE": "0", "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
        stdout, stderr = out.stdout, out.stderr
    except subprocess.TimeoutExpired as e:  # a result printed before a hang still counts
        stdout, stderr = (t.decode() if isinstance(t, bytes) else (t or "") for t in (e.stdout, e.stderr))
        stderr += f"\ntimeout after {args.timeout}s"
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    if lines:
        return json.loads(lines[-1][7:])
    err = [ln for ln in (stderr + stdout).splitlines() if ln.strip()]
    oom = any("OutOfMemory" in ln or "out of memory" in ln for ln in err)
    culprit = next(
        (ln for ln in reversed(err) if ("Error" in ln or "timeout after" in ln) and "ChildFailedError" not in ln),
        err[-1] if err else "?",
    )
    return dict(mode=mode, gpus=gpus, micro_batch=micro_batch, error="OOM" if oom else culprit.strip()[:200])


def _forwarded(args) -> list:
    out = []
    for name in (
        "model",
        "seq_len",
        "steps",
        "warmup",
        "device",
        "precision",
        "kernels",
        "shard_size",
        "activation_checkpointing",
        "float8",
    ):
        value = getattr(args, name)
        if value is not None:
            out += [f"--{name}", str(value)]
    return out + (["--compile"] if args.compile else [])


def table(rows: list) -> str:
    base = {
        (r["mode"], r["micro_batch"]): r["tokens_per_sec_per_gpu"]
        for r in rows
        if r.get("gpus") == 1 and "error" not in r
    }
    lines = [
        f"{'mode':9s} {'gpus':>4s} {'mesh':>7s} {'mb':>3s} {'tok/s':>10s} {'tok/s/gpu':>10s} {'vs 1':>6s} "
        f"{'mem GB':>7s}"
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['mode']:9s} {r['gpus']:4d} {'':>7s} {r['micro_batch']:3d} {r['error']}")
            continue
        one = base.get((r["mode"], r["micro_batch"]))
        ratio = f"{r['tokens_per_sec_per_gpu'] / one:.3f}" if one else "-"
        mesh = "x".join(map(str, r["mesh"]))
        lines.append(
            f"{r['mode']:9s} {r['gpus']:4d} {mesh:>7s} {r['micro_batch']:3d} {r['tokens_per_sec']:10,.0f} "
            f"{r['tokens_per_sec_per_gpu']:10,.0f} {ratio:>6s} {r['peak_memory_gb']:7.2f}"
        )
    return "\n".join(lines)


def main(argv=None) -> list | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny_LLaMA_1b", help="a preset of lit_gpt.config or a YAML/JSON config file")
    p.add_argument("--seq_len", type=int, default=2048)
    p.add_argument("--gpus", default="1,2", help="process counts to compare (GPUs, or CPU processes with --device cpu)")
    p.add_argument("--modes", default="full,no_shard,hybrid")
    p.add_argument("--micro_batches", default="8")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--precision", default="bf16-mixed", choices=["bf16-mixed", "32-true"])
    p.add_argument("--kernels", default=None, help="kernel backend (torch, triton, liger); default: the config's")
    p.add_argument("--compile", action="store_true", help="compile each block")
    p.add_argument("--activation_checkpointing", default="none", choices=["none", "block", "mlp"])
    p.add_argument(
        "--float8",
        default=None,
        choices=["tensorwise", "rowwise"],
        help="float8 block linears (tensorwise under FSDP2: float8 weight all-gather)",
    )
    p.add_argument("--shard_size", type=int, default=None, help="hybrid: devices per shard group (default: per node)")
    p.add_argument("--json", default=None, help="write all rows to this file")
    p.add_argument("--timeout", type=int, default=600, help="seconds per configuration")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: one torchrun process
    args = p.parse_args(argv)

    if args.one:
        mode, mb = args.one.rsplit(":", 1)
        run_one(args, mode, int(mb))
        return None
    modes = args.modes.split(",")
    if unknown := set(modes) - set(MODES):
        p.error(f"unknown modes {sorted(unknown)}; choose from {MODES}")
    rows = []
    for mode in modes:
        for mb in [int(m) for m in args.micro_batches.split(",")]:
            for gpus in [int(g) for g in args.gpus.split(",")]:
                t0 = time.time()
                row = measure(args, mode, gpus, mb)
                row["wall_s"] = round(time.time() - t0, 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print("\n" + table(rows))
    return rows


if __name__ == "__main__":
    main()
