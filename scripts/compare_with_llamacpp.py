"""Greedy tokens of a checkpoint here and of its GGUF export in llama.cpp, side by side.

    python scripts/convert_to_gguf.py --checkpoint out/demo/checkpoints/step-000000300 --output demo-f16.gguf
    python scripts/compare_with_llamacpp.py --checkpoint out/demo/checkpoints/step-000000300 --gguf demo-f16.gguf

Needs llama-cpp-python (`pip install llama-cpp-python`, which builds llama.cpp from source); it is
not a dependency of this project. Both sides decode greedily in fp32 from the same prompt ids
(encoded here, with BOS). Prints both token lists and exits with status 1 when the first `tokens`
differ.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import torch
from jsonargparse import CLI

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from lit_gpt.checkpoint import load_lit_checkpoint, model_from_state_dict  # noqa: E402
from lit_gpt.generate import generate  # noqa: E402
from lit_gpt.tokenizer import Tokenizer  # noqa: E402


def ours(checkpoint: Path, prompt_ids: List[int], tokens: int) -> List[int]:
    state_dict, config = load_lit_checkpoint(checkpoint)
    model = model_from_state_dict(state_dict, replace(config, kernels="torch"), torch.device("cpu"), torch.float32)
    model.max_seq_length = len(prompt_ids) + tokens
    return list(generate(model, torch.tensor(prompt_ids), tokens, temperature=0.0))


def llama_cpp(gguf: Path, prompt_ids: List[int], tokens: int) -> List[int]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=len(prompt_ids) + tokens, n_threads=2, verbose=False)
    out: List[int] = []
    # top_k=1 is greedy whatever llama.cpp does with temperature; no repetition penalty
    for token in llm.generate(prompt_ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
        out.append(token)
        if len(out) == tokens or token == llm.token_eos():
            break
    return out


def main(checkpoint: Path, gguf: Path, prompt: str = "The history of the Roman Empire", tokens: int = 32,
         tokenizer_dir: Optional[Path] = None) -> None:
    """Compare the first `tokens` greedy tokens of `checkpoint` (ours) and `gguf` (llama.cpp).

    Args:
        checkpoint: a lit checkpoint (folder, .pth file or pretraining DCP folder).
        gguf: the GGUF file written from it by scripts/convert_to_gguf.py.
        prompt: the text to continue (encoded here, BOS first).
        tokens: how many generated tokens must agree.
        tokenizer_dir: where the tokenizer is (default: the checkpoint's folder).
    """
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf}")
    tokenizer = Tokenizer(tokenizer_dir or (checkpoint if checkpoint.is_dir() else checkpoint.parent))
    prompt_ids = tokenizer.encode(prompt, bos=True)
    a, b = ours(checkpoint, prompt_ids, tokens), llama_cpp(gguf, prompt_ids, tokens)
    print(f"prompt ids ({len(prompt_ids)}): {prompt_ids}")
    print(f"ours      : {a}\nllama.cpp : {b}")
    print(f"text (ours): {tokenizer.decode(a)!r}")
    same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    if a != b:
        print(f"DIFFER from generated token {same} on")
        sys.exit(1)
    print(f"SAME: all {len(a)} generated tokens agree")


if __name__ == "__main__":
    CLI(main, as_positional=False)
