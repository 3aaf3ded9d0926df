"""Model configuration: one dataclass and its named presets."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

# Config fields that choose kernels, not what the weights mean: a run's flags override them (RunArgs) and a
# resume may change them.
RUNTIME_FIELDS = ("kernels", "attention")


@dataclass
class Config:
    name: str = ""
    block_size: int = 2048  # the context the model is trained for
    vocab_size: int = 32000
    # The embedding and head are padded to a multiple of this for faster matmuls.
    padding_multiple: int = 64
    n_layer: int = 22
    n_head: int = 32
    n_query_groups: int = 4  # number of key/value heads (grouped-query attention)
    n_embd: int = 2048
    intermediate_size: int = 5632  # SwiGLU hidden size
    norm_eps: float = 1e-5
    rope_base: float = 10000.0
    # Positions are divided by this before RoPE ("condense ratio", linear RoPE scaling).
    rope_condense_ratio: float = 1.0
    # Which implementation of the norm/RoPE/SwiGLU/cross-entropy functions to use (lit_gpt.ops).
    kernels: str = "auto"
    # Which attention kernel training and prefill use: "auto", "sdpa", "flex" or "fa4" (lit_gpt.attention).
    attention: str = "auto"
    # Keep attention inside each packed document: a token attends only to earlier tokens after the
    # latest `bos_id` (every prepared document starts with BOS). Training forward only; generation
    # with a KV cache sees one prompt and stays plainly causal.
    document_mask: bool = False
    bos_id: int = 1

    # derived once in __post_init__
    head_size: int = field(init=False)
    padded_vocab_size: int = field(init=False)

    def __post_init__(self) -> None:
        from lit_gpt.attention import CHOICES as ATTENTION_CHOICES
        from lit_gpt.ops import BACKENDS

        def fail(msg: str) -> None:
            raise ValueError(f"invalid config {self.name or '(unnamed)'}: {msg}")

        for name in (
            "block_size",
            "vocab_size",
            "padding_multiple",
            "n_layer",
            "n_head",
            "n_query_groups",
            "n_embd",
            "intermediate_size",
        ):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                fail(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.n_embd % self.n_head:
            fail(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.n_head % self.n_query_groups:
            fail(f"n_head={self.n_head} is not divisible by n_query_groups={self.n_query_groups}")
        if (self.n_embd // self.n_head) % 2:
            fail(f"head size {self.n_embd // self.n_head} is odd; RoPE rotates pairs of dimensions")
        if self.rope_condense_ratio < 1:
            fail(f"rope_condense_ratio must be >= 1, got {self.rope_condense_ratio}")
        if self.norm_eps <= 0:
            fail(f"norm_eps must be positive, got {self.norm_eps}")
        if not isinstance(self.bos_id, int) or self.bos_id < 0:
            fail(f"bos_id must be a non-negative integer, got {self.bos_id!r}")
        if self.kernels not in BACKENDS:
            fail(f"kernels={self.kernels!r} is not one of {', '.join(BACKENDS)}")
        if self.attention not in ATTENTION_CHOICES:
            fail(f"attention={self.attention!r} is not one of {', '.join(ATTENTION_CHOICES)}")
        self.head_size = self.n_embd // self.n_head
        m = self.padding_multiple
        self.padded_vocab_size = (self.vocab_size + m - 1) // m * m

    # --- presets and serialisation -------------------------------------------------------------
    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> Config:
        if name not in PRESETS:
            close = difflib.get_close_matches(name, PRESETS, n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"unknown model preset {name!r}{hint} (known: {', '.join(PRESETS)})")
        return cls.from_dict({**PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        known = {f.name for f in fields(cls) if f.init}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    @classmethod
    def from_file(cls, path: str | Path) -> Config:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model config file not found: {path}")
        try:
            text = path.read_text()
            d = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
            problem = " ".join(str(e).split())
            raise ValueError(
                f"{path}: not a {'JSON' if path.suffix == '.json' else 'YAML'} model config ({problem})"
            ) from None
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a mapping of config fields")
        try:
            return cls.from_dict(d)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from e

    def save(self, path: str | Path) -> None:
        path = Path(path)
        d = self.to_dict()
        text = json.dumps(d, indent=2) if path.suffix == ".json" else yaml.safe_dump(d, sort_keys=False)
        path.write_text(text)


_TINYLLAMA_1B = dict(
    n_layer=22, n_head=32, n_query_groups=4, n_embd=2048, intermediate_size=5632, vocab_size=32000, block_size=2048
)

PRESETS: dict[str, dict[str, Any]] = {
    "tiny_LLaMA_1b": dict(name="tiny_LLaMA_1b", **_TINYLLAMA_1B),
    "tiny_LLaMA_120M": dict(
        name="tiny_LLaMA_120M",
        n_layer=12,
        n_head=12,
        n_query_groups=1,
        n_embd=768,
        intermediate_size=2048,
        vocab_size=32000,
        block_size=2048,
    ),
    "code_tiny_LLaMA_1b": dict(
        name="code_tiny_LLaMA_1b", **{**_TINYLLAMA_1B, "block_size": 8192}, rope_condense_ratio=4.0
    ),
    "Llama-2-7b": dict(
        name="Llama-2-7b",
        n_layer=32,
        n_head=32,
        n_query_groups=32,
        n_embd=4096,
        intermediate_size=11008,
        vocab_size=32000,
        block_size=4096,
    ),
    # The embedded demo: about 5M parameters, trains on a CPU in minutes (vocab of the sample tokenizer).
    "demo_LLaMA_5M": dict(
        name="demo_LLaMA_5M",
        n_layer=4,
        n_head=8,
        n_query_groups=2,
        n_embd=256,
        intermediate_size=704,
        vocab_size=4096,
        block_size=256,
    ),
    # For tests: a few hundred thousand parameters.
    "micro_LLaMA": dict(
        name="micro_LLaMA",
        n_layer=2,
        n_head=4,
        n_query_groups=2,
        n_embd=64,
        intermediate_size=176,
        vocab_size=512,
        block_size=64,
    ),
}
