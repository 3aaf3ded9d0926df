"""The small numerical building blocks the model calls, with plain PyTorch reference versions.

The model never calls a kernel directly: it asks `get_ops(name)` for a namespace of functions
(`rms_norm`, `apply_rope`, `swiglu`, `linear_cross_entropy`) so fused implementations can be swapped
in by configuration without touching the model. Every backend computes the same functions:

- ``rms_norm(x, weight, eps)``: ``x / sqrt(mean(x**2, -1) + eps) * weight``, computed in fp32 and
  returned in ``x.dtype``.
- ``apply_rope(q, k, cos, sin)``: rotate-half RoPE on ``q`` (B, T, Hq, D) and ``k`` (B, T, Hk, D) with
  ``cos``/``sin`` of shape (T, D) (the angle table already repeated over both halves), returning
  new tensors of the input shapes and dtypes.
- ``swiglu(gate, up)``: ``silu(gate) * up``.
- ``linear_cross_entropy(hidden, weight, targets, ignore_index=-100)``: the mean
  cross-entropy of ``hidden @ weight.T`` against ``targets`` over the positions whose target is not
  ``ignore_index``.
  ``hidden`` is (N, C), ``weight`` (V, C), ``targets`` (N,). A fused backend never holds all N x V
  logits at once.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "torch", "triton", "liger", "quack")


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    dtype = x.dtype
    x32 = x.float()
    normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (normed * weight.float()).to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.size(-1) // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    # cos/sin: (T, D) -> broadcast over batch and heads of a (B, T, H, D) tensor
    cos = cos[:, None, :]
    sin = sin[:, None, :]
    q_out = (q.float() * cos + _rotate_half(q.float()) * sin).to(q.dtype)
    k_out = (k.float() * cos + _rotate_half(k.float()) * sin).to(k.dtype)
    return q_out, k_out


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
) -> torch.Tensor:
    logits = (hidden @ weight.t()).float()
    return F.cross_entropy(logits, targets, ignore_index=ignore_index)


TORCH_OPS = SimpleNamespace(
    name="torch",
    rms_norm=rms_norm,
    apply_rope=apply_rope,
    swiglu=swiglu,
    linear_cross_entropy=linear_cross_entropy,
)

_cache: dict[str, SimpleNamespace] = {"torch": TORCH_OPS}


def _load(name: str) -> SimpleNamespace:
    # Each optional backend module exposes an `OPS` namespace with the four functions above.
    module = {"triton": "lit_gpt.kernels", "liger": "lit_gpt.kernels.liger", "quack": "lit_gpt.kernels.quack"}[name]
    return importlib.import_module(module).OPS


def _triton_installed() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def get_ops(name: str = "auto") -> SimpleNamespace:
    """The op namespace for a backend name; ``auto`` is Triton on CUDA, else torch. (Triton on a CPU runs
    only in its interpreter, which the tests use by asking for "triton" explicitly.)"""
    if name not in BACKENDS:
        raise ValueError(f"unknown kernels backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        name = "triton" if torch.cuda.is_available() and _triton_installed() else "torch"
    if name not in _cache:
        try:
            _cache[name] = _load(name)
        except ImportError as e:
            raise ImportError(f"kernels backend {name!r} is not available here: {e}") from e
    return _cache[name]
