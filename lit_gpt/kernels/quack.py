"""RMSNorm and the fused linear cross-entropy from quack-kernels (CuTe DSL kernels for Hopper and newer), with
our own Triton RoPE and SwiGLU, to measure against our kernels (benchmarks/kernel_bench.py, throughput.py).

Importing this module raises ImportError when the optional ``quack`` package (pip ``quack-kernels``, which
flash-attn-4 also brings) is missing; ``lit_gpt.ops.get_ops("quack")`` turns that into a clear message.
Nothing else in lit_gpt imports it. Written against quack-kernels 0.6.x, calling its public functions only.

- RMSNorm: ``quack.rmsnorm.rmsnorm``, fp32 math, output in the input's dtype (our contract).
- The loss: ``quack.linear_cross_entropy.chunked_linear_cross_entropy``, which never holds more than one
  chunk of logits; on an sm90 card in bf16 it takes quack's fused scaled-exp pipeline.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from quack.linear_cross_entropy import chunked_linear_cross_entropy
from quack.rmsnorm import rmsnorm

from lit_gpt.kernels import OPS as TRITON_OPS


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return rmsnorm(x, weight, eps=eps)


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
) -> torch.Tensor:
    return chunked_linear_cross_entropy(
        hidden.reshape(-1, hidden.shape[-1]), weight, targets.reshape(-1), ignore_index=ignore_index
    )


OPS = SimpleNamespace(
    name="quack",
    rms_norm=rms_norm,
    apply_rope=TRITON_OPS.apply_rope,
    swiglu=TRITON_OPS.swiglu,
    linear_cross_entropy=linear_cross_entropy,
)
