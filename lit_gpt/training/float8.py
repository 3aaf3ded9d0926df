"""float8 training: the transformer blocks' linears compute their matmuls in float8 (torchao's
`Float8Linear`), everything else stays as the run's precision says.

Applied from outside the model like sharding and compilation, before both: `convert_to_float8` swaps
the chosen `nn.Linear`s for torchao's subclass, whose parameters keep their names, shapes and dtype, so
checkpoints stay in the ordinary format (a float8 run resumes in bf16 and the reverse, and converts to
Hugging Face and GGUF unchanged).

Recipes (torchao's names): "tensorwise" scales each tensor by one number (fastest on an H100:
benchmarks/RESULTS.md); under FSDP2 it all-gathers the weights in float8 and computes their scales once
per optimizer step (`after_optimizer_step`). "rowwise" scales per row, more robust to outliers, slower.

Which linears: those inside the transformer blocks whose both dimensions are multiples of 16 (the
float8 matmul's requirement) and at least `min_features`. The output head is left alone (its matmul
lives inside the fused cross-entropy); small matmuls cost more in casts than float8 saves on them
(measured: benchmarks/RESULTS.md, float8 section).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn as nn

Float8Recipe = Literal["tensorwise", "rowwise"]
RECIPES = ("tensorwise", "rowwise")
# Smallest linear dimension converted by default: tiny_LLaMA_1b's 2048-wide linears gain, the 768-wide
# ones of tiny_LLaMA_120M do not (benchmarks/RESULTS.md).
DEFAULT_MIN_FEATURES = 1024
# float8 tensor cores: compute capability 8.9 (Ada) and 9.0 (Hopper) and later
MIN_CAPABILITY = (8, 9)


def _torchao_enum_deprecation(record: logging.LogRecord) -> bool:
    """torch's deprecation notice for an Enum that torchao registers as a pytree constant."""
    registered = record.args[0] if isinstance(record.args, tuple) and record.args else None
    return "is an Enum subclass" in record.getMessage() and getattr(registered, "__module__", "").startswith("torchao")


def import_torchao_float8() -> None:
    """Import torchao.float8 (ImportError without torchao) without two log records that say nothing to a
    float8 run: torchao's "Failed to load" for each of its optional compiled extensions that does not load
    here (the MX-format and CUTLASS kernels on a CPU-only torch, say; float8 training runs on torch's own
    `_scaled_mm`), and torch's deprecation of how torchao registers its Enums. Only those, only while
    torchao is imported; everything else is logged."""
    filters = [
        (logging.getLogger("torchao"), lambda record: not record.getMessage().startswith("Failed to load ")),
        (logging.getLogger("torch.utils._pytree"), lambda record: not _torchao_enum_deprecation(record)),
    ]
    for logger, keep in filters:
        logger.addFilter(keep)
    try:
        import torchao.float8  # noqa: F401
    finally:
        for logger, keep in filters:
            logger.removeFilter(keep)


def check_float8(recipe: str | None, accelerator: str = "auto") -> None:
    """Refuse float8 at start-up, with the reason, when it cannot run: unknown recipe, torchao missing, or
    a GPU without float8 tensor cores. On a CPU torchao emulates the float8 matmuls (for tests; slow)."""
    if recipe is None:
        return
    if recipe not in RECIPES:
        raise ValueError(f"float8 recipe {recipe!r} is not one of {', '.join(RECIPES)}")
    try:
        import_torchao_float8()
    except ImportError as e:
        raise RuntimeError(
            f"--float8 {recipe} needs torchao, which is not installed here ({e}). "
            f"Install it with `pip install 'lit_gpt[float8]'` (or `pip install torchao`), or drop --float8."
        ) from None
    if accelerator != "cpu" and torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            capability = torch.cuda.get_device_capability(index)
            if capability < MIN_CAPABILITY:
                name = torch.cuda.get_device_name(index)
                raise RuntimeError(
                    f"--float8 {recipe} needs float8 tensor cores (compute capability 8.9 or newer: H100, H200, "
                    f"L4, L40, RTX 40xx); GPU {index} is {name} (compute capability {capability[0]}.{capability[1]}). "
                    f"Drop --float8 to train in bf16."
                )


def float8_filter(min_features: int = DEFAULT_MIN_FEATURES) -> Callable[[nn.Module, str], bool]:
    """Which modules to convert: linears inside the transformer blocks, both dimensions multiples of 16
    and at least `min_features`."""

    def keep(module: nn.Module, fqn: str) -> bool:
        # plain linears only: subclasses (LoRA's) carry more than a weight, which the swap would drop
        if type(module) is not nn.Linear or ".h." not in f".{fqn}":
            return False
        dims = (module.in_features, module.out_features)
        return all(d % 16 == 0 and d >= min_features for d in dims)

    return keep


def convert_to_float8(
    model: nn.Module,
    recipe: Float8Recipe,
    *,
    sharded: bool = False,
    min_features: int = DEFAULT_MIN_FEATURES,
    fast_accum_backward: bool = False,
) -> int:
    """Swap the chosen linears of `model` (on any device, the meta device included) for float8 ones, in
    place. `sharded`: the model is about to be sharded with FSDP2 (tensorwise then all-gathers float8
    weights). `fast_accum_backward` (tensorwise): the gradient matmuls accumulate as the forward's do,
    without cuBLAS's periodic promotion to fp32. Returns the number of linears converted."""
    import_torchao_float8()
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training
    from torchao.float8.config import Float8GemmConfig

    config = Float8LinearConfig.from_recipe_name(recipe)
    if sharded and recipe == "tensorwise":
        config = Float8LinearConfig(enable_fsdp_float8_all_gather=True)
    if fast_accum_backward:
        fast = Float8GemmConfig(use_fast_accum=True)
        config = dataclasses.replace(config, gemm_config_grad_input=fast, gemm_config_grad_weight=fast)
    before = len(float8_linears(model))
    convert_to_float8_training(model, module_filter_fn=float8_filter(min_features), config=config)
    return len(float8_linears(model)) - before


def float8_linears(model: nn.Module) -> list[nn.Module]:
    """The float8 linears of `model` (by class name: no torchao import needed to ask)."""
    return [m for m in model.modules() if type(m).__name__ == "Float8Linear"]


def after_optimizer_step(model: nn.Module) -> Callable[[], None] | None:
    """What the loop must call after every optimizer step, or None: with float8 weights all-gathered by
    FSDP2, their scales for the next step are computed once here (one fused amax over all weights)
    instead of inside every forward."""
    uses_fp8_all_gather = any(
        getattr(getattr(m, "config", None), "enable_fsdp_float8_all_gather", False) for m in float8_linears(model)
    )
    if not uses_fp8_all_gather:
        return None
    from torchao.float8 import precompute_float8_dynamic_scale_for_fsdp

    return lambda: precompute_float8_dynamic_scale_for_fsdp(model)
