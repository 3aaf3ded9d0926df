"""Fused linear + cross-entropy that never holds all N x V logits.

The tokens are processed in chunks. For each chunk:

1. ``logits = h_chunk @ W.T`` with torch's matmul, in the compute dtype (that of ``hidden``, as the
   reference ``hidden @ weight.t()`` does);
2. one Triton program per row sweeps the row twice in slices of up to 8192 logits (16 warps): an
   online logsumexp (running max and rescaled sum, fp32) gives the row's loss ``lse - logit[target]``;
   the second sweep, mostly served from L2, overwrites the logits in place with the loss's gradient
   ``(softmax - onehot) / n_valid`` (zero for ignored rows). ``n_valid``, the number of non-ignored targets in the
   whole batch, is
   read from device memory: no host sync. (Holding a whole 32k row in registers for a single sweep
   measured no faster on an H100.);
3. ``grad_hidden[chunk] = grad_logits @ W`` and ``grad_W += grad_logits.T @ h_chunk``.

All gradients are thus computed in the forward and saved; the backward only multiplies them by the
incoming scalar gradient. ``grad_W`` is accumulated in the compute dtype through ``addmm_`` (beta=1):
each chunk's product is summed in fp32 inside the GEMM together with the running total and rounded
once, so a bf16 weight gradient takes one bf16 rounding per chunk (four at tiny_LLaMA_1b sizes).

Chunk policy: as many rows as keep one chunk's logits under ``MAX_CHUNK_BYTES`` (256 MiB: 4096 rows
at V=32000 in bf16, so four chunks for a 16k-token micro batch), balanced so all chunks have about
the same size; ``chunk_size=`` overrides it. On an H100 at tiny_LLaMA_1b sizes (8 x 2048 tokens),
forward+backward replayed from a CUDA graph took 9.9 / 10.2 / 9.9 ms with 256 / 512 / 1024 MiB
chunks, allocating 456 / 722 / 1190 MiB beyond its inputs: larger chunks buy nothing measurable.

If all targets are ``ignore_index`` the loss is 0 (the reference's ``F.cross_entropy`` gives NaN).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lit_gpt.kernels._common import cdiv, next_pow2

MAX_CHUNK_BYTES = 256 * 2**20
# Widest slice of a row one loop step loads (16 warps x 16 values); tests lower it to exercise the loop.
MAX_BLOCK_V = 8192


@triton.jit(do_not_specialize=["first_row"])  # one compiled kernel for every chunk offset
def _ce_rows_kernel(
    LOGITS,
    stride_row,
    TARGETS,
    LOSS,
    N_VALID,
    first_row,
    n_cols,
    ignore_index,
    BLOCK_V: tl.constexpr,
    WRITE_GRAD: tl.constexpr,
):
    # LOGITS holds this chunk's rows; TARGETS and LOSS are the whole batch's, from row first_row on
    row = tl.program_id(0).to(tl.int64)
    row_ptr = LOGITS + row * stride_row
    target = tl.load(TARGETS + first_row + row)
    valid = target != ignore_index
    safe_target = tl.where(valid, target, 0)
    target_logit = tl.load(row_ptr + safe_target).to(tl.float32)
    offs = tl.arange(0, BLOCK_V)

    # sweep 1: online logsumexp. The first slice always holds a real logit, so the running max is
    # finite from there on and exp(m_old - m_new) never sees (-inf) - (-inf).
    m = tl.max(tl.full([BLOCK_V], float("-inf"), tl.float32), axis=0)
    s = tl.sum(tl.zeros([BLOCK_V], tl.float32), axis=0)
    for start in range(0, n_cols, BLOCK_V):
        cols = start + offs
        x = tl.load(row_ptr + cols, mask=cols < n_cols, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, axis=0))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        m = m_new
    lse = m + tl.log(s)

    loss = lse - target_logit
    tl.store(LOSS + first_row + row, tl.where(valid, loss, 0.0))

    if WRITE_GRAD:
        # sweep 2 (mostly served from L2): the gradient over the logits, in place
        n_valid = tl.load(N_VALID).to(tl.float32)
        scale = tl.where(valid, 1.0 / tl.maximum(n_valid, 1.0), 0.0)
        for start in range(0, n_cols, BLOCK_V):
            cols = start + offs
            mask = cols < n_cols
            x = tl.load(row_ptr + cols, mask=mask, other=float("-inf")).to(tl.float32)
            g = tl.exp(x - lse) * scale - tl.where(cols == safe_target, scale, 0.0)
            tl.store(row_ptr + cols, g.to(LOGITS.dtype.element_ty), mask=mask)


def default_chunk_rows(n_rows: int, vocab: int, elem_bytes: int, max_chunk_bytes: int | None = None) -> int:
    budget = MAX_CHUNK_BYTES if max_chunk_bytes is None else max_chunk_bytes
    max_rows = max(1, budget // max(1, vocab * elem_bytes))
    n_chunks = cdiv(max(n_rows, 1), max_rows)
    return max(1, cdiv(n_rows, n_chunks))


def _fused_forward(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int,
    chunk_rows: int,
    need_grad_hidden: bool,
    need_grad_weight: bool,
):
    """Loss and (optionally) the gradients of hidden and weight, chunk by chunk."""
    n_rows = hidden.shape[0]
    vocab = weight.shape[0]
    w = weight if weight.dtype == hidden.dtype else weight.to(hidden.dtype)
    n_valid = (targets != ignore_index).sum()
    loss_rows = torch.empty((n_rows,), dtype=torch.float32, device=hidden.device)
    write_grad = need_grad_hidden or need_grad_weight
    grad_hidden = torch.empty_like(hidden) if need_grad_hidden else None
    grad_weight = None
    block_v = min(next_pow2(vocab), MAX_BLOCK_V)
    num_warps = max(1, min(16, block_v // 512))
    for start in range(0, n_rows, chunk_rows):
        end = min(start + chunk_rows, n_rows)
        h = hidden[start:end]
        logits = torch.mm(h, w.t())
        # whole targets/loss buffers and a row offset rather than slices: Inductor's handling of a
        # kernel's view arguments failed for symbolic shapes (torch 2.11, dynamic=True)
        _ce_rows_kernel[(end - start,)](
            logits,
            logits.stride(0),
            targets,
            loss_rows,
            n_valid,
            start,
            vocab,
            ignore_index,
            BLOCK_V=block_v,
            WRITE_GRAD=write_grad,
            num_warps=num_warps,
        )
        # `logits` now holds d(loss)/d(logits) for these rows.
        if need_grad_hidden:
            if end - start == n_rows:
                grad_hidden = torch.mm(logits, w)
            else:
                grad_hidden[start:end] = torch.mm(logits, w)
        if need_grad_weight:
            if grad_weight is None:
                grad_weight = torch.mm(logits.t(), h)
            else:
                grad_weight.addmm_(logits.t(), h)
        # free this chunk before the next one is allocated, so at most one chunk of logits exists
        del logits
    loss = loss_rows.sum() / n_valid.clamp(min=1)
    if grad_weight is not None and grad_weight.dtype != weight.dtype:
        grad_weight = grad_weight.to(weight.dtype)
    return loss, grad_hidden, grad_weight


class LinearCrossEntropyFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index, chunk_rows, need_grad_hidden, need_grad_weight):
        loss, grad_hidden, grad_weight = _fused_forward(
            hidden, weight, targets, ignore_index, chunk_rows, need_grad_hidden, need_grad_weight
        )
        ctx.save_for_backward(grad_hidden, grad_weight)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight = ctx.saved_tensors
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_loss.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = grad_weight * grad_loss.to(grad_weight.dtype)
        return grad_hidden, grad_weight, None, None, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
    *,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of ``hidden @ weight.T`` against ``targets`` over non-ignored positions
    computed chunk by chunk; ``chunk_size`` rows per chunk
    (default: see ``MAX_CHUNK_BYTES``)."""
    if torch.is_autocast_enabled(hidden.device.type):
        # Under autocast the matmuls below would mix dtypes (in-place addmm_ is not autocast): do them
        # in the autocast dtype explicitly, autocast off; the casts stay in the autograd graph.
        dtype = torch.get_autocast_dtype(hidden.device.type)
        with torch.autocast(hidden.device.type, enabled=False):
            return linear_cross_entropy(
                hidden.to(dtype), weight.to(dtype), targets, ignore_index, chunk_size=chunk_size
            )
    n_embd = hidden.shape[-1]
    hidden2 = hidden.reshape(-1, n_embd)
    targets2 = targets.reshape(-1)
    if targets2.shape[0] != hidden2.shape[0]:
        raise ValueError(f"{hidden2.shape[0]} hidden rows but {targets2.shape[0]} targets")
    if weight.dim() != 2 or weight.shape[1] != n_embd:
        raise ValueError(f"weight must be (V, {n_embd}), got {tuple(weight.shape)}")
    if hidden2.stride(-1) != 1:
        hidden2 = hidden2.contiguous()
    if not targets2.is_contiguous():
        targets2 = targets2.contiguous()
    n_rows = hidden2.shape[0]
    chunk_rows = chunk_size or default_chunk_rows(n_rows, weight.shape[0], hidden.dtype.itemsize)
    need_grad_hidden = hidden.requires_grad and torch.is_grad_enabled()
    need_grad_weight = weight.requires_grad and torch.is_grad_enabled()
    if need_grad_hidden or need_grad_weight:
        return LinearCrossEntropyFunction.apply(
            hidden2, weight, targets2, ignore_index, chunk_rows, need_grad_hidden, need_grad_weight
        )
    loss, _, _ = _fused_forward(hidden2, weight, targets2, ignore_index, chunk_rows, False, False)
    return loss
