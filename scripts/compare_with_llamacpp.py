"""Greedy tokens of a checkpoint here and of its GGUF export in llama.cpp, side by side.

    python scripts/convert_to_gguf.py --checkpoint out/demo/checkpoints/step-000000250 --output demo-f16.gguf
    python scripts/compare_with_llamacpp.py --checkpoint out/demo/checkpoints/step-000000250 --gguf demo-f16.gguf

Needs llama-cpp-python (`pip install llama-cpp-python`, which builds llama.cpp from source); it is
not a dependency of this project. Both sides decode greedily in fp32 from the same prompt ids
(encoded here, with BOS). Prints both token lists and exits with status 1 when fewer than
`--agree` leading generated tokens are equal (default: all `--tokens`).

A quantised file (Q8_0, Q4_0, K-quants) holds other weights than the checkpoint, so greedy tokens
part where two candidates were close; how soon depends on the type. The script then also decodes
greedily with the file's own weights, dequantised by the gguf package and run by transformers'
GGUF loader: that side shares llama.cpp's weights, so it checks the file's encoding (block layout,
scales) apart from the quantisation error. llama.cpp still differs in arithmetic (it rounds the
activations to 8 bits for quantised matrix products), so it is reported, not required; so is the
relative difference of the logits over the prompt (llama.cpp against ours, and against the file's
own weights), which shows an encoding mistake (tens of percent) apart from rounding (below 1%).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from jsonargparse import CLI

from lit_gpt.generate import generate
from lit_gpt.inference import load_for_inference
from lit_gpt.model import GPT


def ours(model: GPT, prompt_ids: list[int], tokens: int) -> tuple[list[int], np.ndarray]:
    """Our greedy tokens, and our logits over the prompt (fp32)."""
    model.max_seq_length = len(prompt_ids) + tokens
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids]))[0].numpy()
    return list(generate(model, torch.tensor(prompt_ids), tokens, temperature=0.0)), logits


def llama_cpp(gguf: Path, prompt_ids: list[int], tokens: int) -> tuple[list[int], np.ndarray]:
    """llama.cpp's greedy tokens, and its logits over the prompt."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=len(prompt_ids) + tokens, n_threads=2, logits_all=True, verbose=False)
    llm.eval(prompt_ids)
    logits = np.array(llm.scores[: len(prompt_ids)], dtype=np.float32)
    llm.reset()
    out: list[int] = []
    # top_k=1 is greedy whatever llama.cpp does with temperature; no repetition penalty
    for token in llm.generate(prompt_ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
        out.append(token)
        if len(out) == tokens or token == llm.token_eos():
            break
    return out, logits


def dequantized_weights(gguf_path: Path, prompt_ids: list[int], tokens: int) -> tuple[list[int], np.ndarray]:
    """Greedy tokens and prompt logits of the GGUF file's own (dequantised) weights, through
    transformers' GGUF loader."""
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids])).logits[0].numpy()
        out = model.generate(
            torch.tensor([prompt_ids]), max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=0
        )
    return out[0, len(prompt_ids) :].tolist(), logits


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||b|| over the columns both have (our head may have padding rows past the vocabulary)."""
    width = min(a.shape[-1], b.shape[-1])
    a, b = a[..., :width], b[..., :width]
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def agreement(a: list[int], b: list[int]) -> int:
    """How many leading tokens are equal."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def file_is_quantised(gguf_path: Path) -> bool:
    import gguf as gguf_package

    reader = gguf_package.GGUFReader(gguf_path)
    plain = (gguf_package.GGMLQuantizationType.F32, gguf_package.GGMLQuantizationType.F16)
    return any(t.tensor_type not in plain for t in reader.tensors)


def main(
    checkpoint: Path,
    gguf: Path,
    prompt: str = "The history of the Roman Empire",
    tokens: int = 32,
    agree: int | None = None,
    tokenizer_dir: Path | None = None,
) -> None:
    """Compare the first `tokens` greedy tokens of `checkpoint` (ours) and `gguf` (llama.cpp).

    Args:
        checkpoint: a lit checkpoint (folder, .pth file or pretraining DCP folder), a run folder or a Hugging
            Face folder.
        gguf: the GGUF file written from it by scripts/convert_to_gguf.py.
        prompt: the text to continue (encoded here, BOS first).
        tokens: how many tokens to generate.
        agree: how many leading generated tokens must be equal (default: all `tokens`; lower it for a
            quantised file, see SFT.md / benchmarks/RESULTS.md for what each type reached).
        tokenizer_dir: where the tokenizer is (default: the checkpoint's folder).
    """
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf}")
    agree = tokens if agree is None else agree
    if not 0 <= agree <= tokens:
        raise ValueError(f"--agree {agree} must be between 0 and --tokens {tokens}")
    loaded = load_for_inference(checkpoint, "cpu", torch.float32, tokenizer_dir)
    tokenizer = loaded.tokenizer
    prompt_ids = tokenizer.encode(prompt, bos=True)
    (a, our_logits), (b, their_logits) = ours(loaded.model, prompt_ids, tokens), llama_cpp(gguf, prompt_ids, tokens)
    print(f"prompt ids ({len(prompt_ids)}): {prompt_ids}")
    print(f"ours      : {a}\nllama.cpp : {b}")
    print(f"text (ours): {tokenizer.decode(a)!r}")
    print(f"prompt logits, llama.cpp vs ours: relative difference {relative_difference(their_logits, our_logits):.2e}")
    if file_is_quantised(gguf):
        c, file_logits = dequantized_weights(gguf, prompt_ids, tokens)
        print(f"file's weights (transformers): {c}")
        print(
            f"llama.cpp vs the file's own weights: {agreement(b, c)} of {tokens} leading tokens equal, "
            f"prompt logits relative difference {relative_difference(their_logits, file_logits):.2e}"
        )
        print(
            f"the file's own weights vs ours: {agreement(c, a)} of {tokens} leading tokens equal, "
            f"prompt logits relative difference {relative_difference(file_logits, our_logits):.2e}"
        )
    same = agreement(a, b)
    print(f"ours vs llama.cpp: {same} of {tokens} leading tokens equal")
    if same < agree:
        print(f"DIFFER at generated token {same}: fewer than the {agree} required")
        sys.exit(1)
    print(f"AGREE: at least {agree} leading tokens equal")


if __name__ == "__main__":
    CLI(main, as_positional=False)
