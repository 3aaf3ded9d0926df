"""Autoregressive sampling with the KV cache.

`generate` never grows the model's context by itself: the prompt plus the new tokens must fit in
`model.max_seq_length`, which the caller sets (it may exceed `config.block_size`, at the caller's
choice, since RoPE extends to any length; quality past the trained context is not promised).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator

import torch

from lit_gpt.model import GPT

# Calls of more tokens than this (prompt prefills) run eagerly even when decoding is compiled: each new
# length would cost a compilation and a CUDA graph for one use.
MAX_COMPILED_TOKENS = 9  # a speculative verification of up to 8 drafted tokens
_COMPILED: weakref.WeakKeyDictionary[GPT, Callable] = weakref.WeakKeyDictionary()


def forward_fn(model: GPT, compile: bool = False) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """`f(idx, input_pos)`: the logits of `model(idx, input_pos=input_pos)`, for generation.

    With `compile`, calls of up to MAX_COMPILED_TOKENS tokens (decoding steps, speculative verification)
    run through `torch.compile` with static shapes, replayed as CUDA graphs on a GPU: eager decoding of
    a model this size is bound by the host launching kernels, not by the GPU. The first call of each
    length compiles (seconds to a minute); the compiled step is kept for the model's lifetime."""
    if not compile:
        return lambda idx, input_pos: model(idx, input_pos=input_pos)
    compiled = _COMPILED.get(model)
    if compiled is None:
        # one compilation per call length and model, all of the same code (GPT.forward): a target and a
        # draft with their decoding and verification lengths pass Dynamo's default limit of 8
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        mode = "reduce-overhead" if model.lm_head.weight.is_cuda else None
        compiled = _COMPILED[model] = torch.compile(model, mode=mode, fullgraph=True, dynamic=False)

    def step(idx: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
        if idx.size(1) > MAX_COMPILED_TOKENS:
            return model(idx, input_pos=input_pos)
        # a CUDA graph's output is overwritten by its next replay: keep a copy
        return compiled(idx, input_pos=input_pos).clone()

    return step


def release_kv_cache(model: GPT, compile: bool) -> None:
    """After a generation: free the KV cache, unless a compiled step keeps its buffers for the next one
    (new buffers would cost new CUDA graphs)."""
    if not compile:
        model.clear_kv_cache()


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise ValueError for a sampling setting out of range."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def sample(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token id per row of `logits` (..., vocab).

    temperature 0 takes the argmax. Otherwise the draw is from softmax(logits / temperature), kept to
    the `top_k` most likely tokens and then to the nucleus: the fewest most likely tokens whose
    probability sums to at least `top_p`."""
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(filtered_logits(logits, temperature, top_k, top_p), dim=-1)
    flat = torch.multinomial(probs.reshape(-1, probs.size(-1)), 1, generator=generator)
    return flat.view(probs.shape[:-1])


def filtered_logits(
    logits: torch.Tensor, temperature: float, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """float32 `logits / temperature` (temperature > 0) with -inf outside the `top_k` most likely tokens
    and then outside the nucleus: the fewest most likely tokens whose probability reaches `top_p`."""
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        top = torch.topk(logits, top_k, dim=-1)
        logits = torch.full_like(logits, float("-inf")).scatter(-1, top.indices, top.values)
    if top_p is not None and top_p < 1:
        sorted_probs, order = torch.sort(torch.softmax(logits, dim=-1), dim=-1, descending=True)
        # a token is outside the nucleus when the more likely tokens already reach top_p
        outside = (sorted_probs.cumsum(dim=-1) - sorted_probs) >= top_p
        logits = logits.masked_fill(outside.scatter(-1, order, outside), float("-inf"))
    return logits


def generate(
    model: GPT,
    prompt: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    compile: bool = False,
) -> Iterator[int]:
    """Yield up to `max_new_tokens` token ids following `prompt` (T,), one at a time.

    The prompt is prefilled into the KV cache in one forward pass, then each new token is fed alone at
    its position (compiled with `compile`: see `forward_fn`). An `eos_id` token is yielded and ends
    the generation. Raises ValueError when T + max_new_tokens exceeds `model.max_seq_length` (set that
    first to allow more)."""
    if prompt.dim() != 1 or prompt.numel() == 0:
        raise ValueError(f"prompt must be a non-empty 1-D tensor of token ids, got shape {tuple(prompt.shape)}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    needed = prompt.numel() + max_new_tokens
    if needed > model.max_seq_length:
        raise ValueError(
            f"prompt ({prompt.numel()} tokens) + max_new_tokens ({max_new_tokens}) = {needed} exceeds "
            f"model.max_seq_length ({model.max_seq_length}); set model.max_seq_length = {needed} to allow it"
        )
    check_sampling(temperature, top_k, top_p)  # here, not at the first next()
    return _generate(model, prompt, max_new_tokens, temperature, top_k, top_p, eos_id, generator, compile)


@torch.inference_mode()
def _generate(model, prompt, max_new_tokens, temperature, top_k, top_p, eos_id, generator, compile) -> Iterator[int]:
    device = model.lm_head.weight.device
    model.setup_kv_cache(batch_size=1, device=device)
    forward = forward_fn(model, compile)
    try:
        tokens = prompt.to(device)
        input_pos = torch.arange(tokens.numel(), device=device)
        for _ in range(max_new_tokens):
            logits = forward(tokens.view(1, -1), input_pos)[0, -1]
            token = sample(logits, temperature, top_k, top_p, generator)
            token_id = int(token)
            yield token_id
            if token_id == eos_id:
                return
            tokens, input_pos = token.view(1), input_pos[-1:] + 1
    finally:
        release_kv_cache(model, compile)
