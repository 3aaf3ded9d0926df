"""The four ops on top of liger-kernel's autograd Functions, for comparison with our own kernels.

Importing this module raises ImportError when the optional ``liger_kernel`` package is missing;
``lit_gpt.ops.get_ops("liger")`` turns that into a clear message. Nothing else in lit_gpt imports it.
Written against liger-kernel 0.8.x; only its public autograd Functions are called.

Differences from the reference contracts, all from liger's own design:

- RMSNorm uses liger's "gemma" casting mode (all math in fp32, one cast back), with offset 0 and
  ``in_place=False`` so the incoming gradient is not overwritten.
- RoPE: liger takes (B, H, T, D) tensors and reads only the first half of each cos/sin row (it
  assumes the usual table whose halves are equal). It rotates its input storage in place, so a
  contiguous q/k is cloned first to keep the caller's tensors intact.
- SwiGLU: liger's backward writes the input gradients over the saved ``gate``/``up`` storage.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from liger_kernel.ops.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyFunction
from liger_kernel.ops.rms_norm import LigerRMSNormFunction
from liger_kernel.ops.rope import LigerRopeFunction
from liger_kernel.ops.swiglu import LigerSiLUMulFunction


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # positional: X, W, eps, offset, casting_mode, in_place
    return LigerRMSNormFunction.apply(x, weight, eps, 0.0, "gemma", False)


def apply_rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    # liger turns its (B, H, T, D) argument back into (B, T, H, D) and calls .contiguous(): a copy for
    # strided views (qkv slices), but the caller's own storage for contiguous tensors.
    q_in = q.clone() if q.is_contiguous() else q
    k_in = k.clone() if k.is_contiguous() else k
    q_out, k_out = LigerRopeFunction.apply(q_in.transpose(1, 2), k_in.transpose(1, 2), cos, sin)
    return q_out.transpose(1, 2), k_out.transpose(1, 2)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return LigerSiLUMulFunction.apply(gate, up)


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
) -> torch.Tensor:
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    # positional: _input, weight, target, bias, ce_weight, ignore_index (the rest keep liger's defaults,
    # no z-loss among them)
    out = LigerFusedLinearCrossEntropyFunction.apply(hidden, weight, targets, None, None, ignore_index)
    # liger >= 0.6 returns (loss, z_loss, token_accuracy, ...); older versions the loss alone
    return out[0] if isinstance(out, tuple) else out


OPS = SimpleNamespace(
    name="liger",
    rms_norm=rms_norm,
    apply_rope=apply_rope,
    swiglu=swiglu,
    linear_cross_entropy=linear_cross_entropy,
)
