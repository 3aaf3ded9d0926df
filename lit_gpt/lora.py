"""LoRA (low-rank adapters) for the model's attention and MLP linears, applied from outside the model.

`apply_lora` swaps the chosen `nn.Linear`s for `LoRALinear`, which keeps the frozen `weight` under the
same name (so the base weights load as they are) and adds `lora_a` (r, in) and `lora_b` (out, r):
y = x W^T + (alpha / r) * dropout(x) A^T B^T. B starts at zero, so the adapted model starts equal to the
base. `merge_lora_weights` folds B A into W, giving a plain state dict that converts like any other.
An adapter only makes sense on the base it was trained on: a fine-tuning run records the base's
`base_weights_sha256` with its checkpoints, and merging (or resuming) checks the base against it.

QLoRA: with `quantize="nf4"` the frozen weights are stored 4-bit by bitsandbytes (CUDA only).
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from lit_gpt.config import Config

# module names (relative to a transformer block) that may carry an adapter. The output head is not
# among them: the loss multiplies by `lm_head.weight` directly (fused cross-entropy), past any wrapper.
TARGETS = ("attn.qkv", "attn.proj", "mlp.fc_gate", "mlp.fc_up", "mlp.proj")


@dataclass(frozen=True)
class LoRASettings:
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    targets: tuple[str, ...] = TARGETS
    quantize: str | None = None  # None or "nf4" (QLoRA)

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"lora_r must be at least 1, got {self.r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.dropout}")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets:
            raise ValueError(
                f"lora_targets {list(self.targets)}: choose among {list(TARGETS)}"
                + (f" ({unknown} unknown)" if unknown else " (none given)")
            )
        if self.quantize not in (None, "nf4"):
            raise ValueError(f"quantize must be null or 'nf4', got {self.quantize!r}")

    @property
    def scale(self) -> float:
        return self.alpha / self.r

    def to_dict(self) -> dict:
        return {
            "r": self.r,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "targets": list(self.targets),
            "quantize": self.quantize,
        }

    @classmethod
    def from_dict(cls, d: dict) -> LoRASettings:
        return cls(
            r=int(d["r"]),
            alpha=float(d["alpha"]),
            dropout=float(d["dropout"]),
            targets=tuple(d["targets"]),
            quantize=d.get("quantize"),
        )


class LoRALinear(nn.Linear):
    """A frozen linear layer plus a trainable low-rank update (no bias: the model's linears have none)."""

    def __init__(self, in_features: int, out_features: int, settings: LoRASettings, device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias=False, device=device, dtype=dtype)
        self.weight.requires_grad_(False)
        self.r, self.scale = settings.r, settings.scale
        self.lora_a = nn.Parameter(torch.empty(settings.r, in_features, device=device, dtype=dtype))
        self.lora_b = nn.Parameter(torch.empty(out_features, settings.r, device=device, dtype=dtype))
        self.lora_dropout = nn.Dropout(settings.dropout) if settings.dropout > 0 else nn.Identity()
        self.quantized = False
        if self.lora_a.device.type != "meta":
            self.reset_lora_parameters()

    @torch.no_grad()
    def reset_lora_parameters(self, generator: torch.Generator | None = None) -> None:
        # A as nn.Linear's default init (kaiming uniform, a=sqrt(5)); B zero: the update starts at zero
        bound = 1 / math.sqrt(self.in_features)
        self.lora_a.uniform_(-bound, bound, generator=generator)
        self.lora_b.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantized:
            import bitsandbytes as bnb

            # NF4 blocks dequantise to bfloat16 (quantize_base): compute in it whatever the run's precision
            base = bnb.matmul_4bit(x.to(torch.bfloat16), self.weight.t(), quant_state=self.weight.quant_state).to(
                x.dtype
            )
        else:
            base = F.linear(x, self.weight)
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_a.to(x.dtype)), self.lora_b.to(x.dtype))
        return base + self.scale * update

    def extra_repr(self) -> str:
        return super().extra_repr() + f", r={self.r}, scale={self.scale:g}" + (", nf4" if self.quantized else "")


def lora_module_names(config: Config, settings: LoRASettings) -> list[str]:
    return [f"transformer.h.{i}.{t}" for i in range(config.n_layer) for t in settings.targets]


def apply_lora(model: nn.Module, settings: LoRASettings) -> nn.Module:
    """Replace the target linears by LoRALinear (on the same device and dtype, meta included) and freeze
    every parameter but the adapters. Call it before sharding, compiling or activation checkpointing."""
    for name in lora_module_names(model.config, settings):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        old = getattr(parent, child)
        new = LoRALinear(old.in_features, old.out_features, settings, device=old.weight.device, dtype=old.weight.dtype)
        if old.weight.device.type != "meta":
            with torch.no_grad():
                new.weight.copy_(old.weight)
        setattr(parent, child, new)
    for name, p in model.named_parameters():
        p.requires_grad_(name.endswith((".lora_a", ".lora_b")))
    return model


def lora_init_state(config: Config, settings: LoRASettings, seed: int) -> dict[str, torch.Tensor]:
    """The adapters' initial values (A random from `seed`, B zero) as a full state dict, the same on every
    rank and under every strategy: loaded with the base weights, it makes a fresh run reproducible."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name in lora_module_names(config, settings):
        module = LoRALinear(*_linear_shape(config, name), settings)
        module.reset_lora_parameters(generator)
        state[f"{name}.lora_a"], state[f"{name}.lora_b"] = module.lora_a.data, module.lora_b.data
    return state


def _linear_shape(config: Config, name: str) -> tuple[int, int]:
    c = config
    if name.endswith("attn.qkv"):
        return c.n_embd, (c.n_head + 2 * c.n_query_groups) * c.head_size
    if name.endswith("attn.proj"):
        return c.n_head * c.head_size, c.n_embd
    if name.endswith("mlp.proj"):
        return c.intermediate_size, c.n_embd
    return c.n_embd, c.intermediate_size  # fc_gate, fc_up


def merge_lora_weights(
    base: dict[str, torch.Tensor], adapter: dict[str, torch.Tensor], settings: LoRASettings
) -> dict[str, torch.Tensor]:
    """A plain state dict: each adapted weight W replaced by W + scale * B A (computed in float32, stored
    in W's dtype). `adapter` holds `<module>.lora_a` / `<module>.lora_b` entries."""
    merged = dict(base)
    modules = sorted({k.rsplit(".", 1)[0] for k in adapter if k.endswith((".lora_a", ".lora_b"))})
    if not modules:
        raise ValueError("the adapter holds no lora_a/lora_b tensors")
    for module in modules:
        a, b, key = adapter.get(f"{module}.lora_a"), adapter.get(f"{module}.lora_b"), f"{module}.weight"
        if a is None or b is None or key not in base:
            raise ValueError(f"adapter for {module}: need lora_a, lora_b and the base weight {key}")
        w = base[key]
        delta = settings.scale * (b.float() @ a.float())
        if delta.shape != w.shape:
            raise ValueError(f"adapter for {module}: B A has shape {tuple(delta.shape)}, the weight {tuple(w.shape)}")
        merged[key] = (w.float() + delta).to(w.dtype)
    return merged


BASE_DIGEST = "base_weights_sha256"  # the run-config entry (train_state.json) that identifies an adapter's base


def base_weights_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the base weights: every tensor but the adapters', by name, with its shape and its values
    as float32, so that the same weights give the same digest whatever file or dtype they were read from
    (a lit checkpoint, a Hugging Face folder; bf16, fp16 or fp32)."""
    digest = hashlib.sha256()
    for name in sorted(k for k in state if not k.endswith((".lora_a", ".lora_b"))):
        values = state[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name} {tuple(values.shape)}\n".encode())
        digest.update(values.numpy())
    return digest.hexdigest()


def check_adapter_base(
    checkpoint, run_config: Mapping, base, base_state: Mapping[str, torch.Tensor], allow_other_base: bool = False
) -> None:
    """Raise ValueError when `base_state` (read from `base`) is not the base the adapter of `checkpoint` was
    trained on (its `run_config` records which), unless `allow_other_base`; then, and for a checkpoint that
    records no digest (written by an older version), warn."""
    recorded, trained_on = run_config.get(BASE_DIGEST), run_config.get("initial_weights")
    if recorded is None:
        warnings.warn(
            f"{checkpoint}: records no {BASE_DIGEST} (written by an older version), so {base} cannot be checked "
            f"against the base the adapter was trained on ({trained_on})"
        )
        return
    given = base_weights_sha256(base_state)
    if given == recorded:
        return
    trained = f"{checkpoint}: the adapter was trained on {trained_on} (base weights SHA-256 {recorded[:16]}...)"
    if trained_on is not None and Path(trained_on).resolve() == Path(base).resolve():
        problem = f"{trained}, whose weights have changed since (now SHA-256 {given[:16]}...)"
    else:
        problem = f"{trained}, not on {base}, which holds other weights (SHA-256 {given[:16]}...)"
    if not allow_other_base:
        raise ValueError(
            f"{problem}; pass --base with the weights it was trained on, or --allow_other_base true to merge "
            f"onto these anyway"
        )
    warnings.warn(f"{problem}; merging anyway (--allow_other_base)")


def check_qlora_available(device: torch.device) -> None:
    """QLoRA needs bitsandbytes' 4-bit kernels, i.e. an NVIDIA GPU and its wheel: say so clearly otherwise."""
    if device.type != "cuda":
        raise ValueError(
            f"QLoRA (method 'qlora') needs a CUDA GPU for bitsandbytes' 4-bit kernels; this run is "
            f"on {device.type}. Use method 'lora' here (same adapters, unquantised base)."
        )
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # an import that fails for a missing or broken native library, too
        raise ValueError(
            f"QLoRA needs bitsandbytes (pip install bitsandbytes), which does not load here: {e}"
        ) from None


def quantize_base(model: nn.Module, device: torch.device) -> None:
    """Store every LoRALinear's frozen weight as bitsandbytes NF4 on `device` (QLoRA)."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, LoRALinear) and not module.quantized:
            data = module.weight.data.to(torch.bfloat16).cpu()
            module.weight = bnb.nn.Params4bit(data, requires_grad=False, quant_type="nf4").to(device)
            module.quantized = True


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, all) parameter counts."""
    params: Iterable[torch.Tensor] = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def load_adapter(checkpoint) -> dict[str, torch.Tensor]:
    """The adapter tensors of a LoRA training checkpoint (a torch.distributed.checkpoint folder), in one
    process and on any number of ranks it was written from."""
    from pathlib import Path

    folder = Path(checkpoint)
    if not (folder / ".metadata").is_file():
        raise FileNotFoundError(f"{folder}: not a training checkpoint folder (no .metadata)")
    from lit_gpt.safe_load import load_dcp, read_dcp_metadata

    stored = read_dcp_metadata(folder / ".metadata").state_dict_metadata  # data only: never runs pickled code
    wanted = {
        key: meta
        for key, meta in stored.items()
        if key.startswith("model.") and key.endswith((".lora_a", ".lora_b")) and hasattr(meta, "size")
    }
    if not wanted:
        raise ValueError(f"{folder}: holds no LoRA adapter (was it trained with --method lora?)")
    tensors = {key: torch.empty(meta.size, dtype=meta.properties.dtype) for key, meta in wanted.items()}
    load_dcp(tensors, folder, one_process=True)
    return {key.removeprefix("model."): t for key, t in tensors.items()}


def merge_checkpoint(checkpoint, output_dir, base=None, allow_other_base: bool = False) -> None:
    """Fold the adapter of a LoRA fine-tuning checkpoint into its base weights and write a lit checkpoint
    folder (lit_model.pth, model_config.yaml, the tokenizer and chat template) that the Hugging Face and
    GGUF converters, sft/chat.py and the server take like any other. `base` overrides the base weights
    recorded in the checkpoint; weights other than those the adapter was trained on are refused unless
    `allow_other_base` (see `check_adapter_base`)."""
    import json

    from lit_gpt.checkpoint import has_tokenizer, load_any_checkpoint, save_lit_checkpoint
    from lit_gpt.sft.templates import template_of, write_chat_template

    checkpoint, output_dir = Path(checkpoint), Path(output_dir)
    state_file = checkpoint / "train_state.json"
    if not state_file.is_file():
        raise FileNotFoundError(
            f"{checkpoint}: no train_state.json; pass a LoRA fine-tuning checkpoint folder (step-N)"
        )
    run = json.loads(state_file.read_text())["config"]
    if run.get("method", "full") == "full":
        raise ValueError(f"{checkpoint}: a full fine-tuning checkpoint has no adapter to merge; convert it directly")
    settings = LoRASettings(
        r=run["lora_r"],
        alpha=run["lora_alpha"],
        dropout=run["lora_dropout"],
        targets=tuple(run["lora_targets"] or TARGETS),
    )
    base = Path(base or run.get("initial_weights") or "")
    if not base.exists():
        raise FileNotFoundError(f"{checkpoint}: its base weights {str(base)!r} are not there; pass --base")
    base_state, _ = load_any_checkpoint(base)
    check_adapter_base(checkpoint, run, base, base_state, allow_other_base)
    config = Config.from_file(checkpoint / "model_config.yaml")
    merged = merge_lora_weights(base_state, load_adapter(checkpoint), settings)
    save_lit_checkpoint(output_dir, merged, config, tokenizer_dir=checkpoint if has_tokenizer(checkpoint) else None)
    # the merge has no train_state.json: its tokenizer_config.json says the template (which checkpoints
    # written before the template travelled in theirs lacked)
    template = template_of(checkpoint)
    if template is not None:
        write_chat_template(output_dir, template)
