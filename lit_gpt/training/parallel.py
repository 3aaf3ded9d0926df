"""How a model is spread over devices: the Fabric strategy, FSDP2 sharding, activation checkpointing
and compilation, applied from outside the model (the model code knows none of it)."""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
import torch.nn as nn
from lightning.fabric.strategies import ModelParallelStrategy
from torch.distributed.tensor import DTensor, distribute_tensor

from lit_gpt.model import GPT, seeded_normal_
from lit_gpt.training.float8 import DEFAULT_MIN_FEATURES, convert_to_float8, float8_linears

Strategy = Literal["auto", "single", "ddp", "fsdp"]
Precision = Literal["bf16-mixed", "bf16-true", "32-true"]


ActivationCheckpointing = Literal["none", "block", "mlp"]


def apply_activation_checkpointing(model: GPT, what: ActivationCheckpointing = "block") -> None:
    """Recompute activations in the backward pass instead of keeping them: whole transformer blocks
    ("block"), or only each block's MLP ("mlp": its activations are the largest and the cheapest to
    recompute; measured 8% faster than "block" at the same micro batch, benchmarks/RESULTS.md)."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    if what not in ("none", "block", "mlp"):
        raise ValueError(f"activation checkpointing {what!r} is not one of none, block, mlp")
    blocks = model.transformer.h
    for i, block in enumerate(blocks):
        if what == "mlp":
            block.mlp = checkpoint_wrapper(block.mlp, preserve_rng_state=False)
        elif what == "block":
            blocks[i] = checkpoint_wrapper(block, preserve_rng_state=False)


def apply_compile(
    model: GPT, mode: str | None = None, whole_model: bool = False, tune_kernels: bool | None = None
) -> None:
    """Compile block by block: one graph serves every layer and the parameter names do not change.
    `whole_model`: one graph for the embedding, every block, the final norm and the loss instead (longer
    to compile; lets Inductor fuse across block boundaries; not with FSDP2, whose hooks run per block).
    `mode` is torch.compile's (e.g. "max-autotune-no-cudagraphs" also tries Triton matmuls).
    `tune_kernels`: Inductor's coordinate-descent tuning of the kernels it generates (None: on when the
    model has float8 linears, whose casts and transposes it speeds up by 2.4%; it gains nothing in bf16 and
    adds about a minute of compilation: benchmarks/RESULTS.md)."""
    if tune_kernels is None:
        tune_kernels = bool(float8_linears(model))
    if tune_kernels:
        import torch._inductor.config as inductor_config

        inductor_config.coordinate_descent_tuning = True
    # flash-attn-4 is called outside the graph (lit_gpt.attention), which splits a block in two graphs
    fullgraph = model.config.attention != "fa4"
    if whole_model:
        model.compile(fullgraph=fullgraph, mode=mode)
        return
    for block in model.transformer.h:
        block.compile(fullgraph=fullgraph, mode=mode)


def materialize(model: GPT, device: torch.device) -> None:
    """Give a model built on the meta device real storage and run *our* initialisation on it.

    Lightning would otherwise call each submodule's `reset_parameters()` (PyTorch's default init), which
    silently replaces the TinyLlama init (TinyLlama #88)."""
    if any(t.is_meta for t in model.parameters()):
        model.to_empty(device=device)
        sharded = any(isinstance(p, DTensor) for p in model.parameters())
        model.init_weights(normal_=sharded_normal_ if sharded else None)
    elif model.rope_cos.numel() == 0 or model.rope_cos.device != device:
        model.reset_rope_cache(device)


def sharded_normal_(param: torch.Tensor, std: float, seed: int) -> None:
    """`seeded_normal_` for a parameter sharded as a DTensor: draw the whole tensor on this rank's device
    and keep this rank's shard, so that the weights are those of an unsharded init (exactly)."""
    if not isinstance(param, DTensor):
        seeded_normal_(param, std, seed)
        return
    local = param.to_local()
    full = torch.empty(param.shape, dtype=local.dtype, device=local.device)
    seeded_normal_(full, std, seed)
    # src_data_rank=None: each rank cuts its own shard out of its own copy, no communication
    local.copy_(distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None).to_local())


def fsdp_parallelize(
    model: GPT,
    device_mesh,
    *,
    mixed_precision: bool,
    cpu_offload: bool = False,
    activation_checkpointing: ActivationCheckpointing = "none",
    compile: bool = False,
    float8: str | None = None,
    float8_min_features: int = DEFAULT_MIN_FEATURES,
) -> GPT:
    """FSDP2: one shard unit per transformer block plus the root (embedding, final norm, head); on a
    2-D mesh, HSDP (parameters sharded along the last dimension, replicated along the first).
    With `mixed_precision`, parameters are gathered in bf16 and gradients reduced in fp32 while the
    sharded master copy stays fp32. With `float8` ("tensorwise"), the converted linears' weights are
    gathered in float8 instead."""
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    if float8:
        convert_to_float8(model, float8, sharded=True, min_features=float8_min_features)
    apply_activation_checkpointing(model, activation_checkpointing)
    if compile:
        apply_compile(model)
    # a 2-D (replicate, shard) mesh without a "data_parallel" dimension is used as is: hybrid sharding
    mesh = device_mesh["data_parallel"] if "data_parallel" in (device_mesh.mesh_dim_names or ()) else device_mesh
    kwargs = dict(
        mesh=mesh,
        mp_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if mixed_precision
        else MixedPrecisionPolicy(),
        offload_policy=CPUOffloadPolicy() if cpu_offload else OffloadPolicy(),
    )
    blocks = model.transformer.h
    for i, block in enumerate(blocks):
        # the last block's parameters are needed again at once by the backward pass: keep them gathered
        fully_shard(block, reshard_after_forward=i < len(blocks) - 1, **kwargs)
    fully_shard(model, **kwargs)
    device = torch.device("cpu") if cpu_offload else _local_device(mesh)
    materialize(model, device)
    return model


def _local_device(mesh) -> torch.device:
    if mesh.device_type == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(mesh.device_type)


class DataParallelModelStrategy(ModelParallelStrategy):
    """Fabric's ModelParallelStrategy with every process on the data-parallel mesh dimension: FSDP2
    over all devices of all nodes, no tensor parallelism."""

    def __init__(self, parallelize_fn) -> None:
        super().__init__(parallelize_fn, data_parallel_size="auto", tensor_parallel_size=1)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()


def resolve_strategy(strategy: Strategy, num_devices: int, num_nodes: int) -> str:
    if strategy == "auto":
        return "fsdp" if num_devices * num_nodes > 1 else "single"
    if strategy == "single" and num_devices * num_nodes > 1:
        raise ValueError(f"strategy 'single' needs one device, got devices={num_devices} x nodes={num_nodes}")
    return strategy


def build_fabric_strategy(
    strategy: str,
    precision: Precision,
    *,
    cpu_offload: bool = False,
    activation_checkpointing: ActivationCheckpointing = "none",
    compile: bool = False,
    float8: str | None = None,
    float8_min_features: int = DEFAULT_MIN_FEATURES,
) -> tuple[object, str]:
    """The Fabric strategy object (or name) and the precision Fabric itself should apply.

    Under FSDP2 bf16-mixed is done by the sharding's MixedPrecisionPolicy, so Fabric adds no autocast."""
    if strategy == "fsdp":
        fn = partial(
            fsdp_parallelize,
            mixed_precision=precision == "bf16-mixed",
            cpu_offload=cpu_offload,
            activation_checkpointing=activation_checkpointing,
            compile=compile,
            float8=float8,
            float8_min_features=float8_min_features,
        )
        # pure data parallelism: every process is one shard of the data-parallel mesh dimension
        return DataParallelModelStrategy(fn), ("32-true" if precision == "bf16-mixed" else precision)
    if cpu_offload:
        raise ValueError("cpu_offload needs strategy 'fsdp'")
    return ("ddp" if strategy == "ddp" else "auto"), precision


def prepare_unsharded(
    model: GPT,
    device: torch.device,
    activation_checkpointing: ActivationCheckpointing,
    compile: bool,
    float8: str | None = None,
    float8_min_features: int = DEFAULT_MIN_FEATURES,
) -> GPT:
    """Single-device and DDP runs: the same outside-in treatment as `fsdp_parallelize`, without sharding."""
    if float8:
        convert_to_float8(model, float8, min_features=float8_min_features)
    apply_activation_checkpointing(model, activation_checkpointing)
    if compile:
        apply_compile(model)
    materialize(model, device)
    return model


def unwrap(module: nn.Module) -> nn.Module:
    """The user's module under Fabric's and DDP's wrappers (FSDP2 and checkpoint wrappers stay)."""
    module = getattr(module, "module", module)  # _FabricModule -> its module
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module
