"""Speculative decoding at batch size 1: measured on a real pair, and implied by decode latencies.

(a) pair: for a target/draft pair of checkpoints, the acceptance and the wall-clock speedup over
    target-only decoding (lit_gpt.generate, same settings and seed) for each k and temperature, over a
    few prompts; both ways warmed up first, timed with the device synchronised.
(b) latency: per-token decode latency of model presets (default Llama-2-7b as target, tiny_LLaMA_1b as
    draft) with random weights: a 128-token prompt prefilled, then 128 single-token steps, each timed
    with CUDA events (perf_counter on CPU); also the latency of one (k+1)-token verification pass.
    Then the speedup these latencies imply for an acceptance probability alpha (the pair's measured
    alpha, else --alphas) by the standard formula
        E = (1 - alpha^(k+1)) / (1 - alpha)        tokens per round (alpha = 1: k + 1)
        speedup = E * t_target / (k * t_draft + t_target),
    and once more with the measured (k+1)-token verification latency in place of t_target in the cost.

    python benchmarks/speculative.py --target checkpoints/Llama-2-7b --draft checkpoints/TinyLlama --json spec.json
    python benchmarks/speculative.py --alphas 0.6,0.7,0.8            # (b) only
    python benchmarks/speculative.py --demo_pair out/a out/b --device cpu   # (a) only, on any two folders

`--compile` decodes through torch.compile with CUDA graphs (lit_gpt.generate.forward_fn) in both parts,
after a warm-up that compiles every call length the timed runs meet.

`--demo_pair TARGET DRAFT` runs part (a) on two existing folders and trains nothing (no latency part
unless --latency_target/--latency_draft are given). Prints a short table last; --json keeps everything.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lit_gpt.checkpoint import DTYPES
from lit_gpt.config import Config
from lit_gpt.generate import forward_fn, generate
from lit_gpt.inference import load_for_inference
from lit_gpt.model import GPT
from speculative_decoding.sampling import check_same_tokenizer, speculative_generate

FORMULA = "E = (1 - alpha^(k+1)) / (1 - alpha) tokens per round; speedup = E * t_target / (k * t_draft + t_target)"
DEFAULT_PROMPTS = [
    "The history of the Roman Empire",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "The three most important ideas in physics are",
]


def release_memory(device: torch.device) -> None:
    """Hand the finished models' memory back before the next, larger ones are built."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def wall(device: torch.device, fn: Callable):
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return result, time.perf_counter() - start


# --- (a) a real pair -------------------------------------------------------------------------------
def bench_pair(
    target_path: Path,
    draft_path: Path,
    prompts: list[str],
    ks: list[int],
    temperatures: list[float],
    max_new_tokens: int,
    device: torch.device,
    dtype: torch.dtype,
    seed: int,
    compile: bool = False,
) -> list[dict]:
    target, draft = (load_for_inference(p, device, dtype, require_tokenizer=False) for p in (target_path, draft_path))
    tokenizer = check_same_tokenizer(target, draft)
    if tokenizer is None:
        raise ValueError(f"no tokenizer in {target_path} or {draft_path}")
    encoded = [torch.tensor(tokenizer.encode(p, bos=True)) for p in prompts]
    longest = max(p.numel() for p in encoded) + max_new_tokens
    for model in (target.model, draft.model):
        model.max_seq_length = longest

    def run_target(prompt, n, temperature):
        return list(
            generate(
                target.model,
                prompt,
                n,
                temperature=temperature,
                eos_id=None,
                generator=torch.Generator(device).manual_seed(seed),
                compile=compile,
            )
        )

    def run_speculative(prompt, n, k, temperature):
        return speculative_generate(
            target.model,
            draft.model,
            prompt,
            n,
            k=k,
            temperature=temperature,
            generator=torch.Generator(device).manual_seed(seed),
            compile=compile,
        )

    # compiled, every new call length compiles once: warm up on every prompt, all the way
    warmup = (encoded, max_new_tokens) if compile else (encoded[:1], 8)

    rows = []
    for temperature in temperatures:
        for prompt in warmup[0]:
            run_target(prompt, warmup[1], temperature)
        # EOS does not stop either way: every run decodes exactly max_new_tokens
        base_s = sum(wall(device, lambda: run_target(p, max_new_tokens, temperature))[1] for p in encoded)
        for k in ks:
            for prompt in warmup[0]:
                run_speculative(prompt, warmup[1], k, temperature)
            accepted = proposed = rejected = passes = 0
            spec_s = 0.0
            for prompt in encoded:
                result, seconds = wall(device, lambda: run_speculative(prompt, max_new_tokens, k, temperature))
                s = result.stats
                accepted, proposed, rejected = accepted + s.accepted, proposed + s.proposed, rejected + s.rejected
                passes, spec_s = passes + s.target_forward_passes, spec_s + seconds
            tokens = max_new_tokens * len(encoded)
            rows.append(
                dict(
                    k=k,
                    temperature=temperature,
                    prompts=len(encoded),
                    new_tokens=tokens,
                    acceptance_rate=accepted / proposed if proposed else 0.0,
                    alpha=accepted / (accepted + rejected) if accepted + rejected else 0.0,
                    tokens_per_target_pass=tokens / passes,
                    speculative_tokens_per_s=tokens / spec_s,
                    target_tokens_per_s=tokens / base_s,
                    speedup=base_s / spec_s,
                )
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


# --- (b) decode latencies of presets with random weights -------------------------------------------
def random_model(name: str, device: torch.device, dtype: torch.dtype, max_seq_length: int) -> GPT:
    """A preset with TinyLlama's random init, built on the meta device then materialised on `device`
    (no throwaway CPU copy of a 7B model)."""
    with torch.device("meta"):
        model = GPT(Config.from_name(name, kernels="torch")).to(dtype)
    model.to_empty(device=device)
    model.max_seq_length = max_seq_length
    model.init_weights()  # weights and RoPE tables: to_empty left them uninitialised
    return model.eval()


class StepTimer:
    """Per-call times: CUDA events around each call on a GPU (read after one sync), perf_counter on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.marks = device, []

    def __call__(self, fn: Callable) -> None:
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            self.marks.append((start, end))
        else:
            start = time.perf_counter()
            fn()
            self.marks.append(time.perf_counter() - start)

    def seconds(self) -> list[float]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return [start.elapsed_time(end) / 1000 for start, end in self.marks]
        return list(self.marks)


@torch.inference_mode()
def decode_latency(
    name: str,
    device: torch.device,
    dtype: torch.dtype,
    prompt_len: int,
    steps: int,
    ks: list[int],
    reps: int = 10,
    compile: bool = False,
) -> dict:
    longest = prompt_len + steps + max(ks, default=0) + 1
    model = random_model(name, device, dtype, longest)
    model.setup_kv_cache(batch_size=1, device=device, dtype=dtype)
    vocab = model.config.padded_vocab_size
    tokens = torch.randint(vocab, (1, longest), device=device, generator=torch.Generator(device).manual_seed(0))

    forward = forward_fn(model, compile)

    def step(pos: int, n: int = 1) -> None:
        forward(tokens[:, pos : pos + n], torch.arange(pos, pos + n, device=device))

    step(0, prompt_len)  # prefill
    for i in range(3):  # warm-up steps, overwritten by the timed ones
        step(prompt_len + i)
    timer = StepTimer(device)
    for i in range(steps):
        timer(lambda: step(prompt_len + i))
    single = timer.seconds()
    verify = {}
    for k in ks:  # the target's pass over k drafted tokens + 1, at the positions after the prompt
        timer = StepTimer(device)
        for _ in range(reps + 2):
            timer(lambda: step(prompt_len, k + 1))
        verify[k] = statistics.median(timer.seconds()[2:])
    row = dict(
        model=name,
        dtype=str(dtype).removeprefix("torch."),
        compiled=compile,
        prompt_tokens=prompt_len,
        steps=steps,
        median_ms=1e3 * statistics.median(single),
        mean_ms=1e3 * statistics.fmean(single),
        verify_ms={str(k): 1e3 * v for k, v in verify.items()},
    )
    print(json.dumps(row), flush=True)
    return row


def expected_tokens(alpha: float, k: int) -> float:
    """E = (1 - alpha^(k+1)) / (1 - alpha): tokens per round when each drafted token is accepted with
    probability alpha independently (the accepted prefix plus the correction or bonus token)."""
    return float(k + 1) if alpha >= 1 else (1 - alpha ** (k + 1)) / (1 - alpha)


def implied_speedups(target: dict, draft: dict, alphas: list[dict], ks: list[int]) -> list[dict]:
    t_target, t_draft = target["median_ms"], draft["median_ms"]
    rows = []
    for entry in alphas:
        for k in [entry["k"]] if entry.get("k") else ks:
            e = expected_tokens(entry["alpha"], k)
            t_verify = target["verify_ms"].get(str(k))
            rows.append(
                dict(
                    target=target["model"],
                    draft=draft["model"],
                    k=k,
                    alpha=entry["alpha"],
                    alpha_source=entry["source"],
                    expected_tokens_per_round=e,
                    draft_over_target_latency=t_draft / t_target,
                    implied_speedup=e * t_target / (k * t_draft + t_target),
                    implied_speedup_measured_verify=e * t_target / (k * t_draft + t_verify) if t_verify else None,
                )
            )
    return rows


# --- output ----------------------------------------------------------------------------------------
def print_tables(report: dict) -> None:
    if report["pair"]:
        print("\n(a) measured pair: " + report["pair_names"])
        print(
            f"{'k':>3} {'temp':>5} {'accept':>7} {'alpha':>6} {'tok/pass':>9} {'spec tok/s':>11} "
            f"{'target tok/s':>13} {'speedup':>8}"
        )
        for r in report["pair"]:
            print(
                f"{r['k']:>3} {r['temperature']:>5.2f} {r['acceptance_rate']:>7.1%} {r['alpha']:>6.3f} "
                f"{r['tokens_per_target_pass']:>9.2f} {r['speculative_tokens_per_s']:>11.1f} "
                f"{r['target_tokens_per_s']:>13.1f} {r['speedup']:>7.2f}x"
            )
    if report["latency"]:
        print(f"\n(b) decode latency at batch 1 ({report['device']}), ms per token")
        for r in report["latency"]:
            verify = ", ".join(f"{int(k) + 1} tok {v:.2f}" for k, v in r["verify_ms"].items())
            print(
                f"{r['model']:>16} {r['dtype']:>9}: median {r['median_ms']:.2f}, mean {r['mean_ms']:.2f}; verify "
                f"pass {verify}"
            )
        print(f"\nimplied speedup, {FORMULA}")
        print(f"{'target/draft':>30} {'k':>3} {'alpha':>6} {'source':>18} {'E':>5} {'speedup':>8} {'w/ verify':>10}")
        for r in report["implied"]:
            verify = f"{r['implied_speedup_measured_verify']:.2f}x" if r["implied_speedup_measured_verify"] else "-"
            print(
                f"{r['target'] + '/' + r['draft']:>30} {r['k']:>3} {r['alpha']:>6.3f} {r['alpha_source']:>18} "
                f"{r['expected_tokens_per_round']:>5.2f} {r['implied_speedup']:>7.2f}x {verify:>10}"
            )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", type=Path, help="(a): the target checkpoint (lit folder/.pth/DCP or HF folder)")
    p.add_argument("--draft", type=Path, help="(a): the draft checkpoint")
    p.add_argument(
        "--demo_pair",
        type=Path,
        nargs=2,
        metavar=("TARGET", "DRAFT"),
        help="(a) only, on two existing folders; nothing is trained",
    )
    p.add_argument("--prompts", nargs="+", default=DEFAULT_PROMPTS)
    p.add_argument("--ks", default="2,4,8", help="draft lengths, comma-separated")
    p.add_argument("--temperatures", default="0,1", help="comma-separated")
    p.add_argument("--max_new_tokens", type=int, default=128)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--latency_target", default=None, help="(b) target preset (default Llama-2-7b)")
    p.add_argument("--latency_draft", default=None, help="(b) draft preset (default tiny_LLaMA_1b)")
    p.add_argument("--latency_prompt", type=int, default=128, help="(b) prompt tokens prefilled")
    p.add_argument("--latency_steps", type=int, default=128, help="(b) single-token steps timed")
    p.add_argument(
        "--verify_ks",
        default=None,
        help="(b) k of the timed (k+1)-token verification passes "
        '(default: --ks; "" for none: each costs a compilation with --compile)',
    )
    p.add_argument(
        "--alphas",
        default=None,
        help="(b) acceptance probabilities to imply speedups for when no pair "
        "was measured (default 0.6,0.7,0.8, marked as assumed)",
    )
    p.add_argument("--compile", action="store_true", help="decode through torch.compile (CUDA graphs on a GPU)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default=None, choices=list(DTYPES), help="default bfloat16 on GPU, float32 on CPU")
    p.add_argument("--json", type=Path, default=None, help="write all results to this file")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    dtype = DTYPES[args.dtype or ("bfloat16" if device.type == "cuda" else "float32")]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    ks = [int(k) for k in args.ks.split(",")]
    verify_ks = ks if args.verify_ks is None else [int(k) for k in args.verify_ks.split(",") if k]
    temperatures = [float(t) for t in args.temperatures.split(",")]
    pair = args.demo_pair or ((args.target, args.draft) if args.target or args.draft else None)
    if pair and not all(pair):
        p.error("--target and --draft go together")
    report = dict(
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        formula=FORMULA,
        pair_names=" / ".join(map(str, pair)) if pair else "",
        pair=[],
        latency=[],
        implied=[],
    )

    if pair:
        report["pair"] = bench_pair(
            pair[0],
            pair[1],
            args.prompts,
            ks,
            temperatures,
            args.max_new_tokens,
            device,
            dtype,
            args.seed,
            args.compile,
        )
        release_memory(device)
    run_latency = not args.demo_pair or args.latency_target or args.latency_draft
    if run_latency:
        names = (args.latency_target or "Llama-2-7b", args.latency_draft or "tiny_LLaMA_1b")
        target = decode_latency(
            names[0], device, dtype, args.latency_prompt, args.latency_steps, verify_ks, compile=args.compile
        )
        release_memory(device)
        draft = decode_latency(
            names[1], device, dtype, args.latency_prompt, args.latency_steps, verify_ks, compile=args.compile
        )
        report["latency"] = [target, draft]
        if report["pair"]:
            alphas = [
                dict(alpha=r["alpha"], k=r["k"], source=f"pair, temp {r['temperature']:g}") for r in report["pair"]
            ]
        else:
            given = args.alphas or "0.6,0.7,0.8"
            alphas = [dict(alpha=float(a), source="given" if args.alphas else "assumed") for a in given.split(",")]
        report["implied"] = implied_speedups(target, draft, alphas, ks)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print_tables(report)
    return report


if __name__ == "__main__":
    main()
