"""Speculative decoding from the command line, timed against target-only decoding in the same run.

    python speculative_decoding/generate.py --target checkpoints/Llama-2-7b --draft checkpoints/TinyLlama \\
        --prompt "The capital of France" --max_new_tokens 128 --k 4 --temperature 0

Prints the generated text on stdout; acceptance rate, tokens/s of both ways and the speedup on stderr.
Both ways are warmed up first and run with the same settings and seed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from lit_gpt.exit_codes import run_cli
from lit_gpt.training.option_checks import check_path


def timed(device, fn: Callable):
    """(result, seconds), waiting for the GPU's queued work on both sides of the clock."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start


def speculative_generate(
    target: Path,
    draft: Path,
    prompt: str = "Once upon a time,",
    max_new_tokens: int = 128,
    k: int = 4,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 1234,
    device: str = "auto",
    dtype: Literal["bfloat16", "float16", "float32"] | None = None,
    adaptive: bool = False,
    k_max: int | None = None,
    tokenizer_dir: Path | None = None,
    compile: bool = False,
) -> None:
    """Generate a continuation of `prompt` with `target`, drafted by `draft`.

    Args:
        target: the model whose distribution the output follows: a lit checkpoint (folder, .pth, DCP
            folder), a run folder (its newest whole checkpoint) or a Hugging Face Llama folder.
        draft: the smaller model that proposes tokens (the same kinds of path); same tokenizer as the target.
        prompt: the text to continue; encoded with BOS first.
        max_new_tokens: the most tokens to generate; EOS stops earlier.
        k: draft tokens proposed per round (the starting value with --adaptive).
        temperature: 0 for greedy decoding (then the output equals the target's own greedy output).
        top_k: sample among the k most likely tokens only (applied to target and draft alike).
        top_p: sample within the nucleus of this probability mass only (likewise).
        seed: seed of the sampling generator (the same for both ways).
        device: cpu, cuda, cuda:1, ... or auto (cuda when available).
        dtype: weight type (default: bfloat16 on a GPU that has it, else float32).
        adaptive: adapt k between rounds: up after a fully accepted round, down after early rejections.
        k_max: the largest k with --adaptive (default 2 k).
        tokenizer_dir: where the tokenizer files are (default: the target's or the draft's folder).
        compile: decode through torch.compile with CUDA graphs (both ways; the warm-up compiles).
    """
    import torch  # here, not at the top: `--help` must not wait for torch

    from lit_gpt.checkpoint import default_device_and_dtype
    from lit_gpt.generate import generate
    from lit_gpt.inference import load_for_inference
    from lit_gpt.tokenizer import Tokenizer
    from speculative_decoding.sampling import SpeculativeResult, check_same_tokenizer, speculative_generate

    check_path("target", target, "checkpoint")
    check_path("draft", draft, "checkpoint")
    check_path("tokenizer_dir", tokenizer_dir, "folder")
    device, torch_dtype = default_device_and_dtype(device, dtype)
    target_loaded, draft_loaded = (
        load_for_inference(path, device, torch_dtype, require_tokenizer=False) for path in (target, draft)
    )
    found = check_same_tokenizer(target_loaded, draft_loaded)  # raises for a mismatched pair
    tokenizer = Tokenizer(tokenizer_dir) if tokenizer_dir else found
    if tokenizer is None:
        raise ValueError(f"no tokenizer in {target} or {draft}: pass --tokenizer_dir")
    target_model, draft_model = target_loaded.model, draft_loaded.model

    prompt_ids = torch.tensor(tokenizer.encode(prompt, bos=True))
    needed = prompt_ids.numel() + max_new_tokens
    for model in (target_model, draft_model):
        model.max_seq_length = needed  # also sizes the KV caches
    sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p, eos_id=tokenizer.eos_id)

    def run_target(n: int) -> list[int]:
        generator = torch.Generator(device).manual_seed(seed)
        return list(generate(target_model, prompt_ids, n, generator=generator, compile=compile, **sampling))

    def run_speculative(n: int) -> SpeculativeResult:
        generator = torch.Generator(device).manual_seed(seed)
        return speculative_generate(
            target_model,
            draft_model,
            prompt_ids,
            n,
            k=k,
            generator=generator,
            adaptive=adaptive,
            k_max=k_max,
            compile=compile,
            **sampling,
        )

    # warm-up: kernel selection, allocator pools, lazy CUDA initialisation
    warmup_tokens = max_new_tokens if compile else min(max_new_tokens, 16)  # compiled: meet every length
    run_target(warmup_tokens)
    run_speculative(warmup_tokens)

    baseline, baseline_s = timed(device, lambda: run_target(max_new_tokens))
    result, speculative_s = timed(device, lambda: run_speculative(max_new_tokens))

    print(tokenizer.decode(prompt_ids.tolist() + result.tokens), flush=True)
    stats = result.stats
    speculative_rate, baseline_rate = len(result.tokens) / speculative_s, len(baseline) / baseline_s
    report = [
        f"acceptance rate: {stats.acceptance_rate:.1%} ({stats.accepted}/{stats.proposed} drafted tokens), "
        f"{stats.tokens_per_target_pass:.2f} tokens per target forward pass ({stats.target_forward_passes} passes)",
        f"speculative: {len(result.tokens)} tokens in {speculative_s:.2f} s, {speculative_rate:.1f} tokens/s",
        f"target only: {len(baseline)} tokens in {baseline_s:.2f} s, {baseline_rate:.1f} tokens/s",
        f"speedup: {speculative_rate / baseline_rate:.2f}x (tokens/s; {device.type}, {torch_dtype}, k={k}"
        f"{', adaptive' if adaptive else ''}, temperature {temperature})",
    ]
    if temperature == 0:
        report.append(f"identical to target-only greedy output: {'yes' if result.tokens == baseline else 'NO'}")
    print("\n".join(report), file=sys.stderr)


def main(argv=None) -> None:
    """`lit-speculative` and `speculative_decoding/generate.py`."""
    run_cli(speculative_generate, argv)


if __name__ == "__main__":
    main()
