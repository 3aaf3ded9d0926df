"""Rotate-half RoPE on q and k in one Triton launch, forward and backward.

One program per token (b, t): it loads that position's cos/sin row once and rotates every q head and
every k head of the token as two (heads, head_size/2) tiles each (first and second half). Inputs may
be arbitrary strided views (q and k usually are slices of a fused qkv projection); outputs are new
contiguous tensors. Nothing is saved for backward but cos/sin: the backward is the same kernel with
the transposed rotation (for the usual table, whose halves are equal, a rotation by -sin).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lit_gpt.kernels._common import next_pow2


@triton.jit
def _rotate_heads(
    SRC,
    DST,
    src_token,
    dst_token,
    stride_h,
    n_heads,
    c1,
    c2,
    a,
    b,
    half,
    head_size,
    BLOCK_H: tl.constexpr,
    BLOCK_HALF: tl.constexpr,
):
    # out1 = x1*c1 - x2*a ; out2 = x2*c2 + x1*b  (forward: a=sin1, b=sin2; backward: a=-sin2, b=-sin1)
    h = tl.arange(0, BLOCK_H)
    d = tl.arange(0, BLOCK_HALF)
    mask = (h < n_heads)[:, None] & (d < half)[None, :]
    src = SRC + src_token + h[:, None] * stride_h + d[None, :]
    x1 = tl.load(src, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(src + half, mask=mask, other=0.0).to(tl.float32)
    o1 = x1 * c1[None, :] - x2 * a[None, :]
    o2 = x2 * c2[None, :] + x1 * b[None, :]
    dst = DST + dst_token + h[:, None] * head_size + d[None, :]
    tl.store(dst, o1.to(DST.dtype.element_ty), mask=mask)
    tl.store(dst + half, o2.to(DST.dtype.element_ty), mask=mask)


@triton.jit
def _rope_kernel(
    Q,
    K,
    COS,
    SIN,
    QO,
    KO,
    q_sb,
    q_st,
    q_sh,
    k_sb,
    k_st,
    k_sh,
    cos_st,
    sin_st,
    T,
    n_q_heads,
    n_k_heads,
    half,
    BLOCK_HQ: tl.constexpr,
    BLOCK_HK: tl.constexpr,
    BLOCK_HALF: tl.constexpr,
    BACKWARD: tl.constexpr,
):
    token = tl.program_id(0).to(tl.int64)
    b_idx = token // T
    t_idx = token % T
    d = tl.arange(0, BLOCK_HALF)
    dmask = d < half
    c1 = tl.load(COS + t_idx * cos_st + d, mask=dmask, other=0.0).to(tl.float32)
    c2 = tl.load(COS + t_idx * cos_st + half + d, mask=dmask, other=0.0).to(tl.float32)
    s1 = tl.load(SIN + t_idx * sin_st + d, mask=dmask, other=0.0).to(tl.float32)
    s2 = tl.load(SIN + t_idx * sin_st + half + d, mask=dmask, other=0.0).to(tl.float32)
    if BACKWARD:
        # gradient of x*cos + rotate_half(x)*sin: g*cos + rotate_half^T(g*sin)
        a = -s2
        b = -s1
    else:
        a = s1
        b = s2
    head_size = 2 * half
    _rotate_heads(
        Q,
        QO,
        b_idx * q_sb + t_idx * q_st,
        token * (n_q_heads * head_size),
        q_sh,
        n_q_heads,
        c1,
        c2,
        a,
        b,
        half,
        head_size,
        BLOCK_H=BLOCK_HQ,
        BLOCK_HALF=BLOCK_HALF,
    )
    _rotate_heads(
        K,
        KO,
        b_idx * k_sb + t_idx * k_st,
        token * (n_k_heads * head_size),
        k_sh,
        n_k_heads,
        c1,
        c2,
        a,
        b,
        half,
        head_size,
        BLOCK_H=BLOCK_HK,
        BLOCK_HALF=BLOCK_HALF,
    )


def _inner_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _launch(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, backward: bool):
    q = _inner_contiguous(q)
    k = _inner_contiguous(k)
    B, T, n_q_heads, D = q.shape
    n_k_heads = k.shape[2]
    q_out = torch.empty((B, T, n_q_heads, D), dtype=q.dtype, device=q.device)
    k_out = torch.empty((B, T, n_k_heads, D), dtype=k.dtype, device=k.device)
    if B * T == 0:
        return q_out, k_out
    half = D // 2
    block_half = next_pow2(half)
    block_hq = next_pow2(n_q_heads)
    block_hk = next_pow2(n_k_heads)
    tile = max(block_hq, block_hk) * block_half
    _rope_kernel[(B * T,)](
        q,
        k,
        cos,
        sin,
        q_out,
        k_out,
        q.stride(0),
        q.stride(1),
        q.stride(2),
        k.stride(0),
        k.stride(1),
        k.stride(2),
        cos.stride(0),
        sin.stride(0),
        T,
        n_q_heads,
        n_k_heads,
        half,
        BLOCK_HQ=block_hq,
        BLOCK_HK=block_hk,
        BLOCK_HALF=block_half,
        BACKWARD=backward,
        num_warps=max(1, min(8, tile // 256)),
    )
    return q_out, k_out


class RopeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, cos, sin):
        cos = _inner_contiguous(cos)
        sin = _inner_contiguous(sin)
        ctx.save_for_backward(cos, sin)
        return _launch(q, k, cos, sin, backward=False)

    @staticmethod
    def backward(ctx, dq_out, dk_out):
        cos, sin = ctx.saved_tensors
        dq, dk = _launch(dq_out, dk_out, cos, sin, backward=True)
        # cos/sin are fixed tables (buffers), never trained: no gradient for them.
        return dq, dk, None, None


def apply_rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """Rotate-half RoPE on q (B, T, Hq, D) and k (B, T, Hk, D) with cos/sin of shape (T, D)."""
    if q.dim() != 4 or k.dim() != 4:
        raise ValueError(f"apply_rope expects (B, T, H, D) q and k, got {tuple(q.shape)} and {tuple(k.shape)}")
    B, T, _, D = q.shape
    if k.shape[0] != B or k.shape[1] != T or k.shape[3] != D:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} disagree on batch, time or head size")
    if D % 2:
        raise ValueError(f"rotate-half RoPE needs an even head size, got {D}")
    if tuple(cos.shape) != (T, D) or tuple(sin.shape) != (T, D):
        raise ValueError(f"cos/sin must be (T, D) = ({T}, {D}), got {tuple(cos.shape)} and {tuple(sin.shape)}")
    if k is q:  # see swiglu(): one tensor passed twice loses a gradient under torch.compile
        k = k.view_as(k)
    return RopeFunction.apply(q, k, cos, sin)
