"""Which attention kernel the model's training and prefill forward uses (`Config.attention`).

- ``sdpa``: torch's scaled_dot_product_attention (cuDNN or FlashAttention-2 inside torch); the document
  mask becomes a dense (B, 1, T, T) boolean mask, which is exact but does all the masked work.
- ``flex``: FlexAttention with a block mask, which skips the tiles a document mask leaves empty.
- ``fa4``: flash-attn-4 (``flash_attn.cute``, an optional extra; Hopper and newer, bf16 or fp16), causal,
  and for the document mask its variable-length interface: every packed document is its own sequence,
  found by its BOS token, so nothing between documents is computed.
- ``auto``: the fastest measured (benchmarks/RESULTS.md, "attention kernels"): flash-attn-4 wherever it can
  run; otherwise SDPA, and FlexAttention for the document mask on CUDA. Only a caller that knows the compute
  dtype can pick flash-attn-4 (`resolve(..., dtype=...)`): the trainer decides once at start-up and builds the
  model with the concrete choice; a model built elsewhere with ``auto`` runs SDPA or FlexAttention.

Generation with a KV cache always runs SDPA (the model's inference path).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

CHOICES = ("auto", "sdpa", "flex", "fa4")


@dataclass(frozen=True)
class Segments:
    """flash-attn-4's input: causal attention within each segment of the flattened (B * T) tokens.
    `cu_seqlens` (int32, segments + 1) holds where each segment starts, then B * T; None: one segment per
    row (the plain causal case, no flattening). `max_seqlen` bounds every segment's length (T: a bound is all
    flash-attn-4 needs, and 4.0.0b36's Hopper kernels size neither their grid nor their work by it, so no
    device-to-host copy is spent on finding the longest)."""

    cu_seqlens: torch.Tensor | None
    max_seqlen: int


def resolve(
    name: str,
    document_mask: bool,
    device: torch.device,
    dtype: torch.dtype | None = None,
    head_size: int | None = None,
) -> str:
    """The kernel `name` stands for on `device`: "auto" becomes a concrete choice, the others stay.
    Without `dtype`, "auto" never picks flash-attn-4 (whether it can run depends on the compute dtype)."""
    if name not in CHOICES:
        raise ValueError(f"attention {name!r} is not one of {', '.join(CHOICES)}")
    if name != "auto":
        return name
    if dtype is not None and fa4_missing(device, dtype, head_size) is None:
        return "fa4"
    return "flex" if document_mask and device.type == "cuda" else "sdpa"


def fa4_missing(device: torch.device, dtype: torch.dtype, head_size: int | None = None) -> str | None:
    """Why flash-attn-4 cannot run here, or None when it can."""
    if why := _fa4_unsupported(device, dtype, head_size):
        return why
    if importlib.util.find_spec("flash_attn") is None or importlib.util.find_spec("flash_attn.cute") is None:
        return "flash-attn-4 (flash_attn.cute) is not installed: pip install 'lit_gpt[fa4]'"
    return None


def _fa4_unsupported(device: torch.device, dtype: torch.dtype, head_size: int | None) -> str | None:
    if device.type != "cuda":
        return f"it runs on CUDA GPUs only, and this run is on {device.type}"
    major, minor = torch.cuda.get_device_capability(device)
    if major < 9:
        return f"it needs a Hopper or newer GPU (compute capability 9.0+), and this one is {major}.{minor}"
    if dtype not in (torch.bfloat16, torch.float16):
        return f"it computes in bf16 or fp16, and this run computes in {dtype}: use --precision bf16-mixed"
    if head_size is not None and not (8 <= head_size <= 256 and head_size % 8 == 0):
        # the bound of its Hopper kernels (16-byte aligned rows)
        return f"it takes head sizes from 8 to 256 in steps of 8, and this model's is {head_size}"
    return None


def startup_line(
    name: str, choice: str, document_mask: bool, device: torch.device, dtype: torch.dtype, head_size: int
) -> str:
    """What a run says once at start-up: the kernel, and how to get the faster one when only installing it
    is missing."""
    line = f"attention: {choice}" + (", kept inside each document" if document_mask else "")
    if name == "auto" and choice != "fa4" and _fa4_unsupported(device, dtype, head_size) is None:
        line += " (flash-attn-4 is faster on this GPU: pip install 'lit_gpt[fa4]')"
    return line


def check(
    name: str, document_mask: bool, device: torch.device, dtype: torch.dtype, head_size: int | None = None
) -> str:
    """The concrete choice for a run, refused at start-up (not at the first step) when it cannot run."""
    choice = resolve(name, document_mask, device, dtype, head_size)
    if choice == "fa4" and (why := fa4_missing(device, dtype, head_size)):
        raise ValueError(f"attention fa4: {why}")
    if choice == "flex" and device.type != "cuda":
        # FlexAttention has no CPU backward in torch (it would raise at the first backward pass)
        raise ValueError(f"attention flex trains on CUDA GPUs only, and this run is on {device.type}: use sdpa")
    return choice


def document_segments(idx: torch.Tensor, bos_id: int) -> Segments:
    """The packed documents of a (B, T) batch as flash-attn-4 segments: one starts at every BOS token
    and at every row's first position (a row may begin inside a document)."""
    B, T = idx.shape
    starts = idx == bos_id
    starts[:, 0] = True
    offsets = starts.flatten().nonzero().flatten()
    end = torch.tensor([B * T], device=idx.device, dtype=offsets.dtype)
    cu_seqlens = torch.cat([offsets, end]).to(torch.int32)
    # their number changes with every batch: compiled blocks should not specialise on it
    from torch._dynamo import maybe_mark_dynamic  # here: importing Dynamo costs a command a second or two

    maybe_mark_dynamic(cu_seqlens, 0)
    return Segments(cu_seqlens, T)


# flash-attn-4's kernels are compiled by the CuTe DSL, which Dynamo cannot trace: a compiled block runs
# around this call as two graphs (apply_compile compiles such blocks without fullgraph)
@torch.compiler.disable
def fa4_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, segments: Segments) -> torch.Tensor:
    """Causal attention of q (B, T, H, D) over k, v (B, T, H_kv, D) with flash-attn-4; within each
    segment only when `segments.cu_seqlens` is given. Returns (B, T, H, D)."""
    from flash_attn.cute import flash_attn_func, flash_attn_varlen_func  # an optional extra

    if segments.cu_seqlens is None:
        out = flash_attn_func(q, k, v, causal=True)
    else:
        B, T = q.shape[:2]
        cu, n = segments.cu_seqlens, segments.max_seqlen
        out = flash_attn_varlen_func(
            q.reshape(B * T, *q.shape[2:]),
            k.reshape(B * T, *k.shape[2:]),
            v.reshape(B * T, *v.shape[2:]),
            cu_seqlens_q=cu,
            cu_seqlens_k=cu,
            max_seqlen_q=n,
            max_seqlen_k=n,
            causal=True,
        )
    out = out[0] if isinstance(out, tuple) else out  # some versions return (out, log-sum-exp)
    return out.view(q.shape)
