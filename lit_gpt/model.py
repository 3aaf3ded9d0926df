"""The Llama-2 architecture as one readable file.

The model knows nothing of parallelism, compilation or checkpoint files. Its numerical pieces
(RMSNorm, RoPE, SwiGLU, the output cross-entropy) come from `lit_gpt.ops`, chosen by
`config.kernels`, so fused kernels replace them without touching this file.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

from lit_gpt.attention import Segments, document_segments, fa4_attention, resolve
from lit_gpt.config import Config
from lit_gpt.ops import get_ops

_WRAPPER_NAMES = re.compile(r"(_checkpoint_wrapped_module|_orig_mod)\.")


def parameter_seed(seed: int, name: str) -> int:
    """The seed of one parameter's generator: from the run's seed and the parameter's name."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1, np.uint64)[0] >> 1)


def seeded_normal_(tensor: torch.Tensor, std: float, seed: int) -> None:
    """Fill `tensor` from N(0, std^2) with a generator of its device seeded with `seed`."""
    tensor.normal_(0.0, std, generator=torch.Generator(device=tensor.device).manual_seed(seed))


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float, ops: SimpleNamespace) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps
        self.ops = ops

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops.rms_norm(x, self.weight, self.eps)


class KVCache(nn.Module):
    """Keys and values of past positions, (B, n_query_groups, max_seq_length, head_size)."""

    def __init__(self, k_shape: tuple[int, ...], device=None, dtype=None) -> None:
        super().__init__()
        self.register_buffer("k", torch.zeros(k_shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(k_shape, device=device, dtype=dtype), persistent=False)

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        self.k.index_copy_(2, input_pos, k.to(self.k.dtype))
        self.v.index_copy_(2, input_pos, v.to(self.v.dtype))
        return self.k, self.v


class CausalSelfAttention(nn.Module):
    def __init__(self, config: Config, ops: SimpleNamespace) -> None:
        super().__init__()
        c = config
        # one fused projection: [queries (n_head) | keys (n_query_groups) | values (n_query_groups)] heads
        self.qkv = nn.Linear(c.n_embd, (c.n_head + 2 * c.n_query_groups) * c.head_size, bias=False)
        self.proj = nn.Linear(c.n_head * c.head_size, c.n_embd, bias=False)
        self.config = c
        self.ops = ops
        self.kv_cache: KVCache | None = None

    def forward(self, x, cos, sin, mask=None, input_pos=None):
        c = self.config
        B, T, _ = x.shape
        qkv = self.qkv(x).view(B, T, c.n_head + 2 * c.n_query_groups, c.head_size)
        q, k, v = qkv.split((c.n_head, c.n_query_groups, c.n_query_groups), dim=2)
        q, k = self.ops.apply_rope(q, k, cos, sin)
        if isinstance(mask, Segments):  # flash-attn-4 takes the (B, T, heads, head_size) layout as it is
            y = fa4_attention(q.contiguous(), k.contiguous(), v.contiguous(), mask)
            return self.proj(y.reshape(B, T, c.n_head * c.head_size))
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, T, head_size)
        if input_pos is not None:
            if self.kv_cache is None:
                raise RuntimeError("input_pos given but no KV cache: call model.setup_kv_cache() first")
            k, v = self.kv_cache.update(input_pos, k, v)
            # positions past the last written one hold nothing useful: drop them
            kv_len = mask.size(-1)
            k, v = k[:, :, :kv_len], v[:, :, :kv_len]
        grouped = c.n_query_groups != c.n_head
        if isinstance(mask, BlockMask):
            # contiguous: compiled with RoPE in the same graph, the (B, T, H, D) -> (B, H, T, D) views
            # gave wrong FlexAttention output on the CPU (torch 2.13); the copy fuses into RoPE's
            q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
            flex = flex_attention if torch.compiler.is_compiling() else _compiled_flex_attention()
            y = flex(q, k, v, block_mask=mask, enable_gqa=grouped)
        elif self.training or torch.compiler.is_compiling():
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=grouped)
        else:
            # Inference meets a new length at nearly every call (each generated token, each lm-eval
            # request), and cuDNN's attention builds an execution plan per new shape (tens of ms on an
            # H100): leave it out. One new token sees every cached position: no mask needed then.
            causal = mask is None
            if input_pos is not None and T == 1 and mask.dim() == 2:  # a per-row (padding) mask stays
                mask = None
            with sdpa_kernel(_INFERENCE_BACKENDS):
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=grouped)
        return self.proj(y.transpose(1, 2).reshape(B, T, c.n_head * c.head_size))


_INFERENCE_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
_FLEX_ATTENTION = None


def _compiled_flex_attention():
    """FlexAttention is only fast compiled (eagerly it materialises the scores); compile it once."""
    global _FLEX_ATTENTION
    if _FLEX_ATTENTION is None:
        _FLEX_ATTENTION = torch.compile(flex_attention, dynamic=False)
    return _FLEX_ATTENTION


def document_causal_mask(idx: torch.Tensor, bos_id: int, flex: bool | None = None):
    """Causal attention that does not cross the start of a packed document (a `bos_id` token).

    A FlexAttention block mask (`flex`; None: on CUDA), which skips the tiles between documents
    entirely; or (FlexAttention has no CPU backward) a dense (B, 1, T, T) boolean mask for SDPA."""
    B, T = idx.shape
    doc = torch.cumsum(idx == bos_id, dim=1)  # document number of every position
    if idx.is_cuda if flex is None else flex:

        def same_document_causal(b, h, q, kv):
            return (q >= kv) & (doc[b, q] == doc[b, kv])

        return create_block_mask(same_document_causal, B, None, T, T, device=idx.device)
    causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
    return ((doc[:, :, None] == doc[:, None, :]) & causal)[:, None]


def causal_block_mask(T: int, device: torch.device) -> BlockMask:
    """Plain causal attention over T positions as a FlexAttention block mask (the same for every row)."""
    return create_block_mask(lambda b, h, q, kv: q >= kv, None, None, T, T, device=device)


class MLP(nn.Module):
    def __init__(self, config: Config, ops: SimpleNamespace) -> None:
        super().__init__()
        self.fc_gate = nn.Linear(config.n_embd, config.intermediate_size, bias=False)
        self.fc_up = nn.Linear(config.n_embd, config.intermediate_size, bias=False)
        self.proj = nn.Linear(config.intermediate_size, config.n_embd, bias=False)
        self.ops = ops

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.ops.swiglu(self.fc_gate(x), self.fc_up(x)))


class Block(nn.Module):
    def __init__(self, config: Config, ops: SimpleNamespace) -> None:
        super().__init__()
        self.norm_1 = RMSNorm(config.n_embd, config.norm_eps, ops)
        self.attn = CausalSelfAttention(config, ops)
        self.norm_2 = RMSNorm(config.n_embd, config.norm_eps, ops)
        self.mlp = MLP(config, ops)

    def forward(self, x, cos, sin, mask=None, input_pos=None):
        x = x + self.attn(self.norm_1(x), cos, sin, mask, input_pos)
        return x + self.mlp(self.norm_2(x))


class GPT(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        # drawn before any submodule exists: the same number whether built on the meta device or not
        self.init_seed = int(torch.randint(0, 2**62, (1,), device="cpu").item())
        self.ops = get_ops(config.kernels)  # resolved once, shared by every block
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.padded_vocab_size, config.n_embd),
                h=nn.ModuleList(Block(config, self.ops) for _ in range(config.n_layer)),
                ln_f=RMSNorm(config.n_embd, config.norm_eps, self.ops),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        self._max_seq_length = config.block_size
        self.register_buffer("rope_cos", torch.empty(0), persistent=False)
        self.register_buffer("rope_sin", torch.empty(0), persistent=False)
        if self.lm_head.weight.device.type != "meta":
            self.init_weights()

    # --- initialisation ------------------------------------------------------------------------
    @torch.no_grad()
    def init_weights(self, seed: int | None = None, normal_: Callable | None = None) -> None:
        """TinyLlama's init, plus the RoPE tables. Call it again after `to_empty()` on a model built on
        the meta device (sharded init): construction there cannot initialise anything.

        Each weight is drawn by its own generator, seeded from `seed` (None: `self.init_seed`, drawn from
        torch's global generator at construction, so `torch.manual_seed` fixes it) and the parameter's name,
        so the weights do not
        depend on the order of initialisation or on wrappers. `normal_(tensor, std, seed)` fills one
        weight (default `seeded_normal_`); a sharded model passes one that draws the whole tensor and
        keeps its shard (lit_gpt.training.parallel), so every sharding gets the same weights."""
        seed = self.init_seed if seed is None else seed
        normal_ = normal_ or seeded_normal_
        d, n_layer = self.config.n_embd, self.config.n_layer
        std = math.sqrt(2.0 / (5 * d))
        residual_std = 1 / math.sqrt(d) / n_layer
        for name, module in self.named_modules():
            name = _WRAPPER_NAMES.sub("", name)  # activation checkpointing and compile rename modules
            if isinstance(module, (nn.Linear, nn.Embedding)):
                is_residual_out = name.endswith("attn.proj") or name.endswith("mlp.proj")
                normal_(module.weight, residual_std if is_residual_out else std, parameter_seed(seed, f"{name}.weight"))
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        self.reset_rope_cache()

    @torch.no_grad()
    def reset_rope_cache(self, device: torch.device | None = None) -> None:
        c = self.config
        device = device or self.lm_head.weight.device
        if device.type == "meta":
            return
        inv_freq = 1.0 / (c.rope_base ** (torch.arange(0, c.head_size, 2, device=device).float() / c.head_size))
        positions = torch.arange(self._max_seq_length, device=device).float() / c.rope_condense_ratio
        angles = torch.outer(positions, inv_freq).repeat(1, 2)  # (T, head_size): both halves share angles
        self.rope_cos = angles.cos()
        self.rope_sin = angles.sin()

    @property
    def max_seq_length(self) -> int:
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        """The longest sequence forward() accepts (RoPE table length); may exceed block_size."""
        if value <= 0:
            raise ValueError(f"max_seq_length must be positive, got {value}")
        if value != self._max_seq_length or self.rope_cos.numel() == 0:
            self._max_seq_length = value
            self.reset_rope_cache()

    # --- KV cache for generation ---------------------------------------------------------------
    def setup_kv_cache(self, batch_size: int, max_seq_length: int | None = None, device=None, dtype=None):
        c = self.config
        if max_seq_length is not None:
            self.max_seq_length = max_seq_length
        device = device or self.lm_head.weight.device
        dtype = dtype or self.lm_head.weight.dtype
        shape = (batch_size, c.n_query_groups, self.max_seq_length, c.head_size)
        for block in self.transformer.h:
            cache = block.attn.kv_cache
            # a cache of the same layout is kept (a compiled decoding step keeps its buffers): what it
            # holds is never read before being rewritten, or is masked out
            layout = (shape, dtype, torch.device(device))
            if cache is None or (cache.k.shape, cache.k.dtype, cache.k.device) != layout:
                block.attn.kv_cache = KVCache(shape, device=device, dtype=dtype)

    def clear_kv_cache(self) -> None:
        for block in self.transformer.h:
            block.attn.kv_cache = None

    # --- forward -------------------------------------------------------------------------------
    def training_mask(self, idx: torch.Tensor):
        """What the blocks' attention gets in a forward without a KV cache, by `config.attention`
        (lit_gpt.attention): None (SDPA, causal), a dense or block document mask, or fa4's segments."""
        c = self.config
        choice = resolve(c.attention, c.document_mask, idx.device)
        if choice == "fa4":
            return document_segments(idx, c.bos_id) if c.document_mask else Segments(None, idx.size(1))
        if c.document_mask:
            return document_causal_mask(idx, c.bos_id, flex=choice == "flex")
        return causal_block_mask(idx.size(1), idx.device) if choice == "flex" else None

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
        ignore_index: int = -100,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, padded_vocab) or, with `targets`, the mean cross-entropy loss computed
        without materialising the logits when the ops backend fuses it.

        `input_pos` (T,) gives the positions of `idx` in the KV cache (ascending); without it the
        call is a plain causal forward over positions 0..T-1. `attn_mask`, with `input_pos` only: a
        boolean mask broadcastable to (B, 1, T, cache length), False where a query must not attend to a
        cached position (the left padding of a batch of prompts of different lengths), on top of causality.
        """
        B, T = idx.shape
        if input_pos is None:
            if T > self.max_seq_length:
                raise ValueError(f"sequence of length {T} exceeds max_seq_length {self.max_seq_length}")
            cos, sin = self.rope_cos[:T], self.rope_sin[:T]
            mask = self.training_mask(idx)
        else:
            cos, sin = self.rope_cos.index_select(0, input_pos), self.rope_sin.index_select(0, input_pos)
            # attend to every cached position up to each query's own position. Eagerly the keys stop at
            # the newest position (fewer to read); compiled, the mask spans the whole cache, so that
            # shapes stay static (one CUDA graph serves every step) and nothing waits for the host.
            if torch.compiler.is_compiling():
                kv_len = self.transformer.h[0].attn.kv_cache.k.size(2)
            else:
                kv_len = int(input_pos[-1]) + 1
            mask = torch.arange(kv_len, device=idx.device)[None, :] <= input_pos[:, None]
            if attn_mask is not None:
                mask = mask & attn_mask[..., :kv_len]
        x = self.transformer.wte(idx)
        if torch.is_autocast_enabled(x.device.type):
            # The residual stream in autocast's dtype, as FSDP2's bf16 parameters give it; from the fp32
            # embedding it would stay fp32, doubling the bytes of every norm, residual add and cast
            # (the norms still compute in fp32). Measured: benchmarks/RESULTS.md, fifth session.
            x = x.to(torch.get_autocast_dtype(x.device.type))
        for block in self.transformer.h:
            x = block(x, cos, sin, mask, input_pos)
        x = self.transformer.ln_f(x)
        if targets is None:
            return self.lm_head(x)
        return self.ops.linear_cross_entropy(
            x.reshape(B * T, -1), self.lm_head.weight, targets.reshape(-1), ignore_index=ignore_index
        )


# --- counting, beside the model (torchtitan habit) -------------------------------------------------
def num_parameters(config: Config, exclude_embedding: bool = False) -> int:
    c = config
    per_layer = (
        c.n_embd * (c.n_head + 2 * c.n_query_groups) * c.head_size  # qkv
        + c.n_head * c.head_size * c.n_embd  # attention output
        + 3 * c.n_embd * c.intermediate_size  # SwiGLU
        + 2 * c.n_embd  # two norms
    )
    embedding = c.padded_vocab_size * c.n_embd
    total = c.n_layer * per_layer + c.n_embd + embedding + c.padded_vocab_size * c.n_embd  # + ln_f, head
    return total - embedding if exclude_embedding else total


def flops_per_token(config: Config, seq_len: int | None = None) -> int:
    """Training FLOPs per token (forward + backward): 6 * (parameters without the input embedding)
    + 12 * n_layer * n_embd * context, the PaLM/torchtitan count with no causal discount."""
    seq_len = seq_len or config.block_size
    return 6 * num_parameters(config, exclude_embedding=True) + 12 * config.n_layer * config.n_embd * seq_len
