"""GGUF tensor types: K-quant encoders (Q4_K, Q5_K, Q6_K) in numpy, and which tensor gets which type
for each file type scripts/convert_to_gguf.py writes (`--outtype`).

The gguf package reads and dequantizes these types but does not quantize them; these encoders write
the bytes its dequantizer (and llama.cpp) reads. Every type packs a row in super-blocks of 256 values.

Layouts (bytes of one super-block, in order):
  Q4_K (144): d (f16), dmin (f16), 12 bytes of eight 6-bit sub-block scales and eight 6-bit mins,
              128 bytes of 4-bit quants. Value = d*scale_j*q - dmin*min_j, q in 0..15, j = the
              sub-block of 32 values. Quant byte 32*c + l holds sub-block 2c at l in its low nibble
              and sub-block 2c+1 at l in its high nibble.
  Q5_K (176): as Q4_K, with 32 bytes of fifth bits between the scales and the quants: bit j of byte
              l is the high bit of value l of sub-block j; q in 0..31.
  Q6_K (210): 128 bytes of low 4 bits, 64 bytes of high 2 bits, 16 int8 scales (one per 16
              values), d (f16). Value = d*scale_k*(q - 32), q in 0..63. In each half of 128 values,
              low byte 64*h + l holds value l (low nibble) and l + 64 (high nibble); high byte
              32*h + l holds values l, l+32, l+64, l+96 in bit pairs 0-1, 2-3, 4-5, 6-7.
  The 12 scale bytes of Q4_K/Q5_K: bytes 0-3 hold scales 0-3 (low 6 bits) and the top 2 bits of
  scales 4-7; bytes 4-7 the same for mins; bytes 8-11 the low 4 bits of scale 4+i (low nibble) and
  of min 4+i (high nibble).

How scales are chosen (our rule):
  Q4_K/Q5_K: each 32-value sub-block starts from its range: offset = -min(0, smallest value), step =
  (largest + offset) / levels. Then two rounds of least squares refit step and offset to the rounded
  codes (the codes stay fixed while the two numbers are solved for, then the codes are rounded again).
  The eight steps and eight offsets of a super-block are quantised to 6 bits against their maxima
  (d = largest step / 63, dmin = largest offset / 63), and the values are finally rounded against the
  quantised step and offset, so the codes fit the numbers the file really holds.
  Q6_K: each 16-value sub-block's scale maps its largest-magnitude value to code -32 (the format's
  extreme), the 16 scales are quantised to int8 against the largest (d = largest |scale| / 127), and
  the values are rounded against the quantised scales.

Measured relative RMS error (||w - dequantize(quantize(w))|| / ||w||) on Gaussian weights (see
tests/test_gguf_quants.py, which asserts bounds a little above these): Q6_K 1.9%, Q5_K 3.7%, Q4_K 7.4%
(Q8_0, the gguf package's encoder, 0.54%). The two least-squares rounds take Q4_K from 7.8% to 7.4%.
"""

from __future__ import annotations

import gguf
import numpy as np
from gguf import GGML_QUANT_SIZES, LlamaFileType
from gguf import GGMLQuantizationType as QType

SUPER_BLOCK = 256
_CHUNK = 16384  # super-blocks encoded at a time: bounds the temporaries (~4M values)


def _f16(x: np.ndarray) -> np.ndarray:
    """Round a super-block scale to half precision, as stored: values past the half range clip, and a
    nonzero scale below the smallest half (2**-24, tiny weights) becomes that smallest half rather
    than 0, which would decode the whole super-block to zeros (or to its offsets)."""
    tiny = (x != 0) & (np.abs(x) < 2.0**-24)
    return np.clip(np.where(tiny, np.sign(x) * 2.0**-24, x), -65504.0, 65504.0).astype(np.float16)


def _safe_inverse(x: np.ndarray) -> np.ndarray:
    """1/x where x != 0, else 0 (an all-zero sub-block codes to zeros)."""
    out = np.zeros_like(x)
    np.divide(1.0, x, out=out, where=x != 0)
    return out


def _step_and_offset(x: np.ndarray, levels: int, rounds: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Per sub-block (last axis) a step >= 0 and an offset >= 0 with x ~ step*q - offset, q in 0..levels."""
    offset = -np.minimum(x.min(-1, keepdims=True), 0.0)
    step = (x.max(-1, keepdims=True) + offset) / levels
    n = x.shape[-1]
    for _ in range(rounds):
        q = np.clip(np.rint((x + offset) * _safe_inverse(step)), 0, levels)
        # least squares of x = step*q - offset over the sub-block, codes fixed
        sq, sx, sqq, sqx = (
            q.sum(-1, keepdims=True),
            x.sum(-1, keepdims=True),
            (q * q).sum(-1, keepdims=True),
            (q * x).sum(-1, keepdims=True),
        )
        det = n * sqq - sq * sq
        ok = det > 0
        new_step = np.where(ok, (n * sqx - sq * sx) / np.where(ok, det, 1), step)
        new_offset = np.where(ok, (sq * new_step - sx) / n, offset)
        # the format wants step >= 0 and offset >= 0 (unsigned 6-bit numbers): keep the old fit otherwise
        good = ok & (new_step > 0) & (new_offset >= 0)
        step, offset = np.where(good, new_step, step), np.where(good, new_offset, offset)
    return step, offset


def _pack_scales_mins(scales: np.ndarray, mins: np.ndarray) -> np.ndarray:
    """Eight 6-bit scales and eight 6-bit mins per super-block -> the 12 bytes of Q4_K/Q5_K."""
    sc, mn = scales.astype(np.uint8), mins.astype(np.uint8)
    out = np.empty(sc.shape[:-1] + (12,), dtype=np.uint8)
    out[..., 0:4] = sc[..., :4] | ((sc[..., 4:] >> 4) << 6)
    out[..., 4:8] = mn[..., :4] | ((mn[..., 4:] >> 4) << 6)
    out[..., 8:12] = (sc[..., 4:] & 0x0F) | ((mn[..., 4:] & 0x0F) << 4)
    return out


def _quantize_k_asymmetric(blocks: np.ndarray, bits: int) -> tuple[np.ndarray, ...]:
    """Shared part of Q4_K (bits=4) and Q5_K (bits=5): d, dmin (f16), the 12 scale bytes, the codes
    (n, 8, 32) in 0..2**bits-1."""
    levels = (1 << bits) - 1
    x = blocks.reshape(-1, 8, 32)
    step, offset = _step_and_offset(x, levels)
    step, offset = step[..., 0], offset[..., 0]  # (n, 8)
    d = _f16(step.max(-1, keepdims=True) / 63)
    dmin = _f16(offset.max(-1, keepdims=True) / 63)
    d32, dmin32 = d.astype(np.float32), dmin.astype(np.float32)
    # a sub-block far smaller than the largest of its super-block keeps at least the smallest nonzero
    # scale: rounded to 0, all its values would decode to -offset
    scales = np.clip(np.rint(step * _safe_inverse(d32)), np.where(step > 0, 1, 0), 63)
    mins = np.clip(np.rint(offset * _safe_inverse(dmin32)), 0, 63)
    real_step, real_offset = (d32 * scales)[..., None], (dmin32 * mins)[..., None]
    q = np.clip(np.rint((x + real_offset) * _safe_inverse(real_step)), 0, levels).astype(np.uint8)
    return d, dmin, _pack_scales_mins(scales, mins), q


def quantize_q4_k_blocks(blocks: np.ndarray) -> np.ndarray:
    """(n, 256) float32 -> (n, 144) uint8 Q4_K super-blocks."""
    n = blocks.shape[0]
    d, dmin, scale_bytes, q = _quantize_k_asymmetric(blocks, 4)
    q = q.reshape(n, 4, 2, 32)
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(n, 128)
    return np.concatenate([d.view(np.uint8), dmin.view(np.uint8), scale_bytes, qs], axis=1)


def quantize_q5_k_blocks(blocks: np.ndarray) -> np.ndarray:
    """(n, 256) float32 -> (n, 176) uint8 Q5_K super-blocks."""
    n = blocks.shape[0]
    d, dmin, scale_bytes, q = _quantize_k_asymmetric(blocks, 5)  # q: (n, 8, 32)
    high = (q >> 4).astype(np.uint8)
    qh = np.zeros((n, 32), dtype=np.uint8)
    for j in range(8):  # bit j of byte l: high bit of value l of sub-block j
        qh |= high[:, j] << j
    low = (q & 0x0F).reshape(n, 4, 2, 32)
    qs = (low[:, :, 0] | (low[:, :, 1] << 4)).reshape(n, 128)
    return np.concatenate([d.view(np.uint8), dmin.view(np.uint8), scale_bytes, qh, qs], axis=1)


def quantize_q6_k_blocks(blocks: np.ndarray) -> np.ndarray:
    """(n, 256) float32 -> (n, 210) uint8 Q6_K super-blocks."""
    n = blocks.shape[0]
    x = blocks.reshape(n, 16, 16)
    extreme = np.take_along_axis(x, np.abs(x).argmax(-1)[..., None], -1)[..., 0]  # signed, (n, 16)
    scale = extreme / -32.0  # the extreme value codes to -32
    largest = np.take_along_axis(scale, np.abs(scale).argmax(-1)[:, None], -1)  # signed, (n, 1)
    d = _f16(largest / -128.0)  # the largest scale codes to -128, as a value codes to -32
    d32 = d.astype(np.float32)
    scales = np.rint(scale * _safe_inverse(d32))
    # as in Q4_K: a nonzero sub-block keeps a nonzero scale (of its sign)
    scales = np.clip(np.where((scales == 0) & (scale != 0), np.sign(scale * d32), scales), -128, 127)
    real = (d32 * scales)[..., None]
    q = (np.clip(np.rint(x * _safe_inverse(real)), -32, 31) + 32).astype(np.uint8).reshape(n, 2, 128)
    low, high = q & 0x0F, q >> 4
    ql = (low[:, :, :64] | (low[:, :, 64:] << 4)).reshape(n, 128)
    h = high.reshape(n, 2, 4, 32)
    qh = (h[:, :, 0] | (h[:, :, 1] << 2) | (h[:, :, 2] << 4) | (h[:, :, 3] << 6)).reshape(n, 64)
    return np.concatenate([ql, qh, scales.astype(np.int8).view(np.uint8), d.view(np.uint8)], axis=1)


K_QUANTIZERS = {QType.Q4_K: quantize_q4_k_blocks, QType.Q5_K: quantize_q5_k_blocks, QType.Q6_K: quantize_q6_k_blocks}


def quantize_k(data: np.ndarray, qtype: QType) -> np.ndarray:
    """A float array whose last dimension is a multiple of 256 -> the uint8 array GGUF stores (same
    leading dims, last dim in bytes), as gguf.quants.quantize returns for the types it supports."""
    if qtype not in K_QUANTIZERS:
        raise ValueError(
            f"{qtype.name} is not a K-quant this module encodes ({', '.join(t.name for t in K_QUANTIZERS)})"
        )
    if data.ndim == 0 or data.shape[-1] % SUPER_BLOCK:
        raise ValueError(
            f"{qtype.name} packs rows in super-blocks of {SUPER_BLOCK} values; shape {data.shape} does not"
        )
    block_bytes = GGML_QUANT_SIZES[qtype][1]
    blocks = np.ascontiguousarray(data, dtype=np.float32).reshape(-1, SUPER_BLOCK)
    if not np.isfinite(blocks).all():
        raise ValueError(f"cannot quantize to {qtype.name}: the tensor holds NaN or infinite values")
    out = np.empty((blocks.shape[0], block_bytes), dtype=np.uint8)
    for start in range(0, blocks.shape[0], _CHUNK):
        out[start : start + _CHUNK] = K_QUANTIZERS[qtype](blocks[start : start + _CHUNK])
    return out.reshape(*data.shape[:-1], data.shape[-1] // SUPER_BLOCK * block_bytes)


# --- which tensor gets which type -------------------------------------------------------------------
# A file type names a main type for its matrices and a larger type for the tensors quantisation hurts
# most (the same for the single-type files), and the file type llama.cpp records.
FILE_TYPES: dict[str, tuple[QType, QType, LlamaFileType]] = {
    "f32": (QType.F32, QType.F32, LlamaFileType.ALL_F32),
    "f16": (QType.F16, QType.F16, LlamaFileType.MOSTLY_F16),
    "q8_0": (QType.Q8_0, QType.Q8_0, LlamaFileType.MOSTLY_Q8_0),
    "q4_0": (QType.Q4_0, QType.Q4_0, LlamaFileType.MOSTLY_Q4_0),
    "q4_k_m": (QType.Q4_K, QType.Q6_K, LlamaFileType.MOSTLY_Q4_K_M),
    "q5_k_m": (QType.Q5_K, QType.Q6_K, LlamaFileType.MOSTLY_Q5_K_M),
    "q6_k": (QType.Q6_K, QType.Q6_K, LlamaFileType.MOSTLY_Q6_K),
}


def gets_more_bits(layer: int, n_layer: int) -> bool:
    """Layers whose attn_v and ffn_down take the larger type in a *_k_m file: the first and last eighth
    of the layers and every third layer between them (the usual medium-file recipe)."""
    eighth = n_layer // 8
    return layer < eighth or layer >= n_layer - eighth or (layer - eighth) % 3 == 2


def tensor_type(name: str, shape: tuple[int, ...], file_type: str, n_layer: int) -> QType:
    """The stored type of tensor `name` (llama.cpp's name, PyTorch shape) in a file of `file_type`.

    1-D tensors (norms) stay F32, as llama.cpp expects. In a *_k_m file output and token_embd take the
    larger type (Q6_K), attn_v and ffn_down take it in the layers `gets_more_bits` picks, every other
    matrix the main type. A matrix whose rows do not fill the type's blocks (256 values for K-quants,
    32 for Q8_0/Q4_0) falls back to Q8_0 (rows a multiple of 32), else to F16.
    """
    if file_type not in FILE_TYPES:
        raise ValueError(f"file type {file_type!r} is not one of {', '.join(FILE_TYPES)}")
    main, more, _ = FILE_TYPES[file_type]
    if len(shape) == 1:
        return QType.F32
    qtype = main
    if name in ("output.weight", "token_embd.weight"):
        qtype = more
    elif name.endswith(("attn_v.weight", "ffn_down.weight")):
        layer = _layer_of(name)
        if layer is not None and gets_more_bits(layer, n_layer):
            qtype = more
    for candidate in (qtype, QType.Q8_0):
        if candidate in (QType.F32, QType.F16) or shape[-1] % GGML_QUANT_SIZES[candidate][0] == 0:
            return candidate
    return QType.F16


def _layer_of(name: str) -> int | None:
    parts = name.split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "blk" and parts[1].isdigit() else None


def encode(data: np.ndarray, qtype: QType) -> np.ndarray:
    """The array GGUF stores for `data` as `qtype`: float arrays for F32/F16, uint8 blocks otherwise
    (K-quants by this module, the other types by the gguf package)."""
    if qtype in K_QUANTIZERS:
        return quantize_k(data, qtype)
    return gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), qtype)
