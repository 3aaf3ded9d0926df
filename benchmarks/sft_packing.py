"""Fine-tuning throughput in real (non-padding) tokens per second: packed rows against length-bucketed
batches, on the chat sample, with the training step the fine-tuning job runs (forward with the loss on
the assistant's tokens, backward, clipping, AdamW).

    python benchmarks/sft_packing.py                                           # GPU: tiny_LLaMA_1b, rows of 2048
    python benchmarks/sft_packing.py --model_name micro_LLaMA --max_seq_length 256 --steps 10   # the CPU check

Both modes see the same conversations and the same micro batch size (conversations per batch when
bucketed, rows of max_seq_length tokens when packed), one process each. Without --tokenizer_dir a
SentencePiece BPE tokenizer (vocab 2048) is trained on the sample's messages first. Packed runs use the
document mask (FlexAttention on a GPU, a dense mask on the CPU) like the job. Prints one JSON line per
mode, then the speed-up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lit_gpt.cli.shipped import demo_data


def train_tokenizer(folder: Path) -> Path:
    import sentencepiece as spm

    from lit_gpt.sft.data import read_conversations

    texts = [m["content"] for c in read_conversations(demo_data("chat_sample")) for m in c]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=2048,
        byte_fallback=True,
        model_type="bpe",
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    return folder


def run_one(args) -> dict:
    import torch

    from lit_gpt.config import Config
    from lit_gpt.model import GPT
    from lit_gpt.sft.data import ChatBatches, PackedBatches, read_conversations, split_chat_batch, tokenize
    from lit_gpt.sft.templates import SegmentEncoder, get_template
    from lit_gpt.tokenizer import Tokenizer
    from lit_gpt.training.trainer import grad_norm_and_clip, make_optimizer

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    tokenizer = Tokenizer(args.tokenizer_dir)
    packed = args.mode == "packed"
    config = Config.from_name(
        args.model_name,
        block_size=args.max_seq_length,
        vocab_size=max(tokenizer.vocab_size, 512),
        document_mask=packed,
        bos_id=tokenizer.bos_id,
    )
    examples = tokenize(
        read_conversations(demo_data("chat_sample")),
        SegmentEncoder(tokenizer),
        get_template("zephyr"),
        args.max_seq_length,
    )
    assert all(0 not in e.ids for e in examples), "pad id 0 appears in the data: real tokens would be miscounted"
    loader_cls = PackedBatches if packed else ChatBatches
    loader = iter(loader_cls(examples, args.micro_batch_size, args.max_seq_length, seed=0))
    model = GPT(config).to(device)
    if args.compile:
        for block in model.transformer.h:
            block.compile()
    optimizer = make_optimizer(model, 1e-4, 0.0, (0.9, 0.95))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> int:
        batch = next(loader)
        x, y = split_chat_batch({k: v.to(device, non_blocking=True) for k, v in batch.items()})
        with autocast:
            loss = model(x, targets=y)
        loss.backward()
        grad_norm_and_clip(model, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return int((batch["input_ids"][:, :-1] != 0).sum())  # conversation tokens read, padding left out

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start, real = time.perf_counter(), 0
    for _ in range(args.steps):
        real += step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out = {
        "mode": args.mode,
        "model": args.model_name,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "micro_batch_size": args.micro_batch_size,
        "max_seq_length": args.max_seq_length,
        "steps": args.steps,
        "real_tokens": real,
        "seconds": round(seconds, 3),
        "real_tokens_per_sec": round(real / seconds, 1),
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        out["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_name", default="tiny_LLaMA_1b")
    parser.add_argument("--max_seq_length", type=int, default=2048)
    parser.add_argument("--micro_batch_size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--tokenizer_dir", type=Path)
    parser.add_argument("--mode", choices=["bucketed", "packed"], help="run one mode in this process (internal)")
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run_one(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_dir = args.tokenizer_dir or train_tokenizer(Path(tmp))
        results = {}
        for mode in ("bucketed", "packed"):
            argv = [a for a in sys.argv[1:]]
            argv += (
                ["--mode", mode, "--tokenizer_dir", str(tokenizer_dir)] if not args.tokenizer_dir else ["--mode", mode]
            )
            proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{mode} failed:\n{proc.stderr[-3000:]}")
            results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(json.dumps(results[mode]))
    speedup = results["packed"]["real_tokens_per_sec"] / results["bucketed"]["real_tokens_per_sec"]
    print(f"packed / bucketed real tokens per second: {speedup:.2f}x")


if __name__ == "__main__":
    main()
