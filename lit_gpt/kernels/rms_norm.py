"""RMSNorm forward and backward in Triton.

Forward: one program per row; the whole row sits in registers (block = next power of two of the
row length, masked), statistics in fp32. It saves the per-row reciprocal RMS (``rstd``, fp32) so the
backward needs no second reduction over ``x**2``.

Backward: a fixed number of programs, each walking a contiguous run of rows; ``dx`` is written per
row and each program keeps its own fp32 partial sum of ``dy * x_hat`` for the weight gradient, stored
as one row of a (programs, n_cols) buffer that a final ``sum(0)`` reduces. That avoids atomics (and
their nondeterminism) at the cost of one small extra buffer.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lit_gpt.kernels._common import cdiv, next_pow2, row_warps

# Programs used by the backward; each owns one fp32 partial row of the weight gradient. 512 keeps
# an H100 (132 SMs) busy while the partial buffer stays ~4 MB at d_model 2048. Tests lower it so
# that programs handle several rows.
BWD_PROGRAMS = 512


@triton.jit
def _rms_norm_fwd_kernel(X, W, Y, RSTD, stride_x, stride_y, n_cols, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / n_cols + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    y = (x * rstd) * w
    tl.store(Y + row * stride_y + cols, y.to(Y.dtype.element_ty), mask=mask)
    tl.store(RSTD + row, rstd)


@triton.jit
def _rms_norm_bwd_kernel(
    DY,
    X,
    W,
    RSTD,
    DX,
    DW_PARTIAL,
    stride_dy,
    stride_x,
    stride_dx,
    n_rows,
    n_cols,
    rows_per_program,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    dw_acc = tl.zeros([BLOCK], dtype=tl.float32)
    row_start = pid.to(tl.int64) * rows_per_program
    n_own_rows = tl.minimum(rows_per_program, n_rows - row_start)
    for i in range(0, n_own_rows):
        row = row_start + i
        x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + row * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + row)
        x_hat = x * rstd
        wdy = w * dy
        # d/dx of x*rstd*w: rstd * (w*dy - x_hat * mean(w*dy*x_hat))
        c = tl.sum(x_hat * wdy, axis=0) / n_cols
        dx = (wdy - x_hat * c) * rstd
        tl.store(DX + row * stride_dx + cols, dx.to(DX.dtype.element_ty), mask=mask)
        dw_acc += dy * x_hat
    tl.store(DW_PARTIAL + pid.to(tl.int64) * n_cols + cols, dw_acc, mask=mask)


def _rows(t: torch.Tensor):
    """(tensor, row stride, number of rows) of ``t`` seen as rows of its last dimension."""
    n_cols = t.shape[-1]
    if t.is_contiguous():  # the common case: no reshape op (each torch call costs host time)
        return t, n_cols, t.numel() // max(n_cols, 1)
    rows = t.reshape(-1, n_cols)
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    return rows, rows.stride(0), rows.shape[0]


class RMSNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        x_rows, stride_x, n_rows = _rows(x)
        n_cols = x.shape[-1]
        if weight.stride(0) != 1:
            weight = weight.contiguous()
        y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        rstd = torch.empty((n_rows,), dtype=torch.float32, device=x.device)
        block = next_pow2(n_cols)
        if n_rows > 0:
            _rms_norm_fwd_kernel[(n_rows,)](
                x_rows,
                weight,
                y,
                rstd,
                stride_x,
                n_cols,
                n_cols,
                eps,
                BLOCK=block,
                num_warps=row_warps(block),
            )
        ctx.save_for_backward(x_rows, weight, rstd)
        ctx.stride_x = stride_x
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x_rows, weight, rstd = ctx.saved_tensors
        n_rows, n_cols = rstd.shape[0], dy.shape[-1]
        dy_rows, stride_dy, _ = _rows(dy)
        dx = torch.empty(dy.shape, dtype=x_rows.dtype, device=dy.device)
        if n_rows == 0:
            return dx, torch.zeros_like(weight), None
        rows_per_program = cdiv(n_rows, min(n_rows, BWD_PROGRAMS))
        n_programs = cdiv(n_rows, rows_per_program)
        dw_partial = torch.empty((n_programs, n_cols), dtype=torch.float32, device=dy.device)
        block = next_pow2(n_cols)
        _rms_norm_bwd_kernel[(n_programs,)](
            dy_rows,
            x_rows,
            weight,
            rstd,
            dx,
            dw_partial,
            stride_dy,
            ctx.stride_x,
            n_cols,
            n_rows,
            n_cols,
            rows_per_program,
            BLOCK=block,
            num_warps=row_warps(block),
        )
        return dx, dw_partial.sum(0).to(weight.dtype), None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``x / sqrt(mean(x**2, -1) + eps) * weight`` in fp32, returned in ``x.dtype``."""
    return RMSNormFunction.apply(x, weight, eps)
