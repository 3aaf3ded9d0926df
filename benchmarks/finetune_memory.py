"""Fine-tuning on one GPU: peak memory and tokens/s of LoRA on a large base beside full fine-tuning of a
small one, through the real job (`sft/finetune.py`, packed rows of the chat sample).

Each base is a random-weight model of the preset, written once as a lit checkpoint (speed and memory do
not depend on the weights); the job's own log lines give tokens/s and peak memory. Prints a table last.

    python benchmarks/finetune_memory.py --tokenizer_dir .gpu_data/tokenizer            # GPU: Llama-2-7b LoRA,
    tiny_LLaMA_1b full
    python benchmarks/finetune_memory.py --runs micro_LLaMA:lora,micro_LLaMA:full --accelerator cpu \
        --max_seq_length 128 --tokenizer_dir out/demo/tokenizer                          # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LOG_LINE = re.compile(r"step (\d+)/\d+ \|.*?\| ([\d,]+) tok/s(?: \| MFU [\d.]+%)?(?: \| mem ([\d.]+) GB)?")


def write_base(name: str, folder: Path, tokenizer_dir: Path, device: str) -> None:
    """A random-weight lit checkpoint of preset `name` in bf16 (built on `device`, saved from the CPU)."""
    import torch

    from lit_gpt.checkpoint import save_lit_checkpoint
    from lit_gpt.config import Config
    from lit_gpt.model import GPT
    from lit_gpt.tokenizer import Tokenizer

    vocab = Tokenizer(tokenizer_dir).vocab_size
    config = Config.from_name(name)
    if config.padded_vocab_size < vocab:
        config = Config.from_name(name, vocab_size=vocab)
    torch.manual_seed(0)
    with torch.device(device):
        model = GPT(config).to(torch.bfloat16)
    save_lit_checkpoint(folder, {k: v.cpu() for k, v in model.state_dict().items()}, config, tokenizer_dir)
    del model


def run(args, name: str, method: str) -> dict:
    base = args.work_dir / f"base_{name}"
    if not (base / "lit_model.pth").is_file():
        write_base(name, base, args.tokenizer_dir, "cuda" if args.accelerator == "cuda" else "cpu")
    out = args.work_dir / f"run_{name}_{method}"
    cmd = [
        sys.executable,
        str(ROOT / "sft" / "finetune.py"),
        "--checkpoint",
        str(base),
        "--method",
        method,
        "--out_dir",
        str(out),
        "--resume",
        "null",
        "--accelerator",
        args.accelerator,
        "--packed",
        "true",
        "--max_seq_length",
        str(args.max_seq_length),
        "--micro_batch_size",
        str(args.micro_batch),
        "--global_batch_size",
        str(args.micro_batch),
        "--max_steps",
        str(args.steps),
        "--warmup_steps",
        "1",
        "--log_interval",
        "2",
        "--eval_interval",
        str(args.steps),
        "--save_interval",
        "0",
        "--tensorboard",
        "false",
    ]
    if method != "full":
        cmd += ["--precision", "bf16-true"]  # frozen weights in bf16: half of bf16-mixed's fp32 copy
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    row = dict(
        model=name,
        method=method,
        micro_batch=args.micro_batch,
        max_seq_length=args.max_seq_length,
        wall_s=round(time.time() - t0, 1),
    )
    lines = LOG_LINE.findall(proc.stdout + proc.stderr)
    if lines:
        step, tps, mem = lines[-1]  # the last window: compilation and warm-up are behind it
        row.update(
            step=int(step), tokens_per_sec=float(tps.replace(",", "")), peak_memory_gb=float(mem) if mem else None
        )
    if proc.returncode or not lines:
        # the job's own last words (its one-line error or a traceback's end), not its progress lines
        tail = [ln for ln in proc.stderr.splitlines() if ln.strip() and "tok/s" not in ln][-3:]
        row["error"] = f"exit {proc.returncode}: " + " | ".join(tail)[-400:]
    return row


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="Llama-2-7b:lora,tiny_LLaMA_1b:full", help="preset:method pairs")
    p.add_argument("--tokenizer_dir", type=Path, required=True)
    p.add_argument("--work_dir", type=Path, default=Path("/tmp/finetune_memory"))
    p.add_argument("--accelerator", default="cuda")
    p.add_argument("--max_seq_length", type=int, default=2048)
    p.add_argument("--micro_batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--timeout", type=int, default=600)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    rows = []
    for pair in args.runs.split(","):
        name, method = pair.split(":")
        rows.append(run(args, name, method))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(f"\n{'model':16s} {'method':6s} {'tok/s':>9s} {'peak GB':>8s}")
    for r in rows:
        if "tokens_per_sec" in r:
            mem = f"{r['peak_memory_gb']:8.1f}" if r["peak_memory_gb"] is not None else f"{'-':>8s}"
            print(f"{r['model']:16s} {r['method']:6s} {r['tokens_per_sec']:9,.0f} {mem}")
        if "error" in r:
            print(f"{r['model']:16s} {r['method']:6s} {r['error']}")
    return rows


if __name__ == "__main__":
    main()
