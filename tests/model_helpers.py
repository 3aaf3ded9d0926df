"""Tiny models shared by the model, checkpoint and generation tests, and the lines their tokenizer
(`sp_tokenizer_dir` in conftest.py) is trained on."""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from lit_gpt.config import Config
from lit_gpt.model import GPT


def tiny_config(**overrides) -> Config:
    """Two layers with grouped-query attention (4 query heads over 2 key/value heads)."""
    fields = dict(
        name="t",
        n_layer=2,
        n_head=4,
        n_query_groups=2,
        n_embd=32,
        intermediate_size=88,
        vocab_size=128,
        block_size=64,
        kernels="torch",
    )
    return Config(**{**fields, **overrides})


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights large enough for mistakes to show in the logits, and norm weights away from 1 so that
    swapping two norms is caught too."""
    generator = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=generator)
        p.copy_(1 + 0.3 * noise if p.dim() == 1 else 0.2 * noise)
    return model


def random_model(config: Config, seed: int = 0) -> GPT:
    return randomize(GPT(config), seed).eval()


def _sample_lines(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "tu", "ra", "zo", "pe", "qui", "ab", "el", "on", "st", "ch", "é", "ü"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(300)]
    words += ["the", "model", "learns", "tokens", "from", "text", "and", "code", "café", "naïve"]
    return [
        " ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) + rng.choice([".", "!", "?", ""])
        for _ in range(n)
    ]


SAMPLE_LINES = _sample_lines(400)


def segment_attention(q, k, v, starts: list[int]):
    """Causal SDPA on each segment of flattened (N, heads, D) tensors, the grouped heads repeated."""
    groups = q.size(1) // k.size(1)
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    parts = []
    for a, b in zip(starts[:-1], starts[1:]):
        qs, ks, vs = (t[a:b].transpose(0, 1) for t in (q, k, v))
        parts.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=True).transpose(0, 1))
    return torch.cat(parts)
