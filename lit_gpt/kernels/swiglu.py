"""SwiGLU ``silu(gate) * up`` in Triton, forward and backward.

Elementwise over a 2-D (rows, cols) view of the inputs, which may have a row stride (slices of a
fused gate/up projection); contiguous inputs are treated as one long row so no lane is masked off.
Math in fp32, one rounding to the output dtype. The backward recomputes sigmoid/silu from the saved
inputs (nothing else is saved).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lit_gpt.kernels._common import cdiv

BLOCK = 1024  # 4 warps x 32 threads x 8 elements: 16-byte bf16 vectors
NUM_WARPS = 4


@triton.jit
def _swiglu_fwd_kernel(G, U, Y, stride_g, stride_u, n_cols, n_col_blocks, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    row = pid // n_col_blocks
    cols = (pid % n_col_blocks) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_cols
    g = tl.load(G + row * stride_g + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + row * stride_u + cols, mask=mask, other=0.0).to(tl.float32)
    y = g * tl.sigmoid(g) * u
    tl.store(Y + row * n_cols + cols, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_bwd_kernel(DY, G, U, DG, DU, stride_dy, stride_g, stride_u, n_cols, n_col_blocks, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    row = pid // n_col_blocks
    cols = (pid % n_col_blocks) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_cols
    dy = tl.load(DY + row * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(G + row * stride_g + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + row * stride_u + cols, mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(g)
    silu = g * sig
    # silu'(g) = sig * (1 + g * (1 - sig))
    dg = dy * u * sig * (1.0 + g * (1.0 - sig))
    du = dy * silu
    tl.store(DG + row * n_cols + cols, dg.to(DG.dtype.element_ty), mask=mask)
    tl.store(DU + row * n_cols + cols, du.to(DU.dtype.element_ty), mask=mask)


def _as_2d(*tensors: torch.Tensor):
    """(tensors, row strides, rows, cols) viewing equally shaped tensors as (rows, cols) with unit
    column stride; contiguous tensors are passed as they are, as one row (no view op: host time)."""
    if all(t.is_contiguous() for t in tensors):
        return tensors, [0] * len(tensors), 1, tensors[0].numel()
    out = []
    for t in tensors:
        t2 = t.reshape(-1, t.shape[-1])
        out.append(t2 if t2.stride(-1) == 1 else t2.contiguous())
    return out, [t.stride(0) for t in out], out[0].shape[0], out[0].shape[1]


class SwiGLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        out_dtype = torch.promote_types(gate.dtype, up.dtype)
        y = torch.empty(gate.shape, dtype=out_dtype, device=gate.device)
        (g2, u2), (stride_g, stride_u), n_rows, n_cols = _as_2d(gate, up)
        n_col_blocks = cdiv(n_cols, BLOCK)
        if n_rows * n_cols > 0:
            _swiglu_fwd_kernel[(n_rows * n_col_blocks,)](
                g2,
                u2,
                y,
                stride_g,
                stride_u,
                n_cols,
                n_col_blocks,
                BLOCK=BLOCK,
                num_warps=NUM_WARPS,
            )
        ctx.save_for_backward(gate, up)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        gate, up = ctx.saved_tensors
        dgate = torch.empty(gate.shape, dtype=gate.dtype, device=gate.device)
        dup = torch.empty(up.shape, dtype=up.dtype, device=up.device)
        (dy2, g2, u2), (stride_dy, stride_g, stride_u), n_rows, n_cols = _as_2d(dy, gate, up)
        n_col_blocks = cdiv(n_cols, BLOCK)
        if n_rows * n_cols > 0:
            _swiglu_bwd_kernel[(n_rows * n_col_blocks,)](
                dy2,
                g2,
                u2,
                dgate,
                dup,
                stride_dy,
                stride_g,
                stride_u,
                n_cols,
                n_col_blocks,
                BLOCK=BLOCK,
                num_warps=NUM_WARPS,
            )
        return dgate, dup


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` for equally shaped tensors."""
    if gate.shape != up.shape:
        raise ValueError(f"swiglu needs equal shapes, got {tuple(gate.shape)} and {tuple(up.shape)}")
    if up is gate:
        # torch.compile (seen on 2.11) keeps only one of the two gradients when one tensor object is
        # passed twice to an autograd.Function; a view is a distinct input and gets both summed.
        up = up.view_as(up)
    return SwiGLUFunction.apply(gate, up)
