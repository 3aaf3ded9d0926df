"""Sample text from a checkpoint, printing it as the tokens arrive.

    python scripts/generate.py --checkpoint checkpoints/TinyLlama --prompt "The capital of France" \\
        --max_new_tokens 100 --temperature 0.8 --top_k 50
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Literal

from lit_gpt.exit_codes import run_cli
from lit_gpt.training.option_checks import check_path


def generate_text(
    checkpoint: Path | None = None,
    prompt: str = "Once upon a time,",
    max_new_tokens: int = 100,
    temperature: float = 0.8,
    top_k: int | None = 50,
    top_p: float | None = None,
    seed: int = 1234,
    device: str = "auto",
    dtype: Literal["bfloat16", "float16", "float32"] | None = None,
    tokenizer_dir: Path | None = None,
    compile: bool = False,
    checkpoint_dir: Path | None = None,
) -> None:
    """Generate a continuation of `prompt`.

    Args:
        checkpoint: a lit checkpoint folder, a .pth file, a pretraining/fine-tuning checkpoint folder, or a run
            folder (its newest whole checkpoint), as sft/chat.py takes it.
        prompt: the text to continue; encoded with BOS first.
        max_new_tokens: the most tokens to generate; EOS stops earlier.
        temperature: 0 for greedy decoding.
        top_k: sample among the k most likely tokens only.
        top_p: sample within the nucleus of this probability mass only.
        seed: seed of the sampling generator.
        device: cpu, cuda, cuda:1, ... or auto (cuda when available).
        dtype: weight type (default: bfloat16 on a GPU that has it, else float32).
        tokenizer_dir: where the tokenizer files are (default: the checkpoint's folder).
        compile: decode through torch.compile (CUDA graphs on a GPU): faster per token after a
            compilation of up to a minute; pays off for long generations.
        checkpoint_dir: the former name of --checkpoint.
    """
    import torch  # here, not at the top: `--help` must not wait for torch

    from lit_gpt.generate import generate
    from lit_gpt.inference import load_for_inference

    if (checkpoint is None) == (checkpoint_dir is None):
        raise ValueError("give --checkpoint (a checkpoint or run folder)")
    check_path("checkpoint" if checkpoint else "checkpoint_dir", checkpoint or checkpoint_dir, "checkpoint")
    check_path("tokenizer_dir", tokenizer_dir, "folder")
    loaded = load_for_inference(checkpoint or checkpoint_dir, device, dtype, tokenizer_dir)
    model, tokenizer, config = loaded.model, loaded.tokenizer, loaded.config

    prompt_ids = tokenizer.encode(prompt, bos=True)
    needed = len(prompt_ids) + max_new_tokens
    if needed > config.block_size:
        print(f"note: {needed} tokens exceed the trained context of {config.block_size}", file=sys.stderr)
    model.max_seq_length = needed  # also sizes the KV cache
    generator = torch.Generator(loaded.device).manual_seed(seed)

    # Decode the whole sequence each time and print what is new: pieces that only make sense
    # together (a leading space, a multi-byte character) come out right.
    printed = tokenizer.decode(prompt_ids)
    print(printed, end="", flush=True)
    new_ids = []
    start = time.perf_counter()
    for token in generate(
        model,
        torch.tensor(prompt_ids),
        max_new_tokens,
        temperature,
        top_k,
        top_p,
        tokenizer.eos_id,
        generator,
        compile=compile,
    ):
        new_ids.append(token)
        text = tokenizer.decode(prompt_ids + new_ids)
        if text.startswith(printed) and not text.endswith("\ufffd"):  # wait for a character's last byte
            print(text[len(printed) :], end="", flush=True)
            printed = text
    elapsed = time.perf_counter() - start
    text = tokenizer.decode(prompt_ids + new_ids)
    print(text[len(printed) :] if text.startswith(printed) else "", flush=True)
    print(f"{len(new_ids)} tokens in {elapsed:.2f} s: {len(new_ids) / elapsed:.1f} tokens/s", file=sys.stderr)


def main(argv=None) -> None:
    """`lit-generate` and `scripts/generate.py`."""
    run_cli(generate_text, argv)


if __name__ == "__main__":
    main()
