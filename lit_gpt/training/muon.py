"""Muon for the transformer blocks' weight matrices and AdamW for the rest, as one optimizer.

Muon ("momentum orthogonalized by Newton-Schulz") keeps a Nesterov momentum of each hidden weight matrix and
steps along the nearest semi-orthogonal matrix to it (every singular value near 1), which five steps of a
quintic Newton-Schulz iteration in bf16 approximate. Weight decay is decoupled (the weights shrink by
lr * weight_decay each step, as in AdamW). The embedding and the output head (rows looked up or scored one
token at a time) and the norm weights (vectors) are not hidden matrices: AdamW trains them, exactly as
`make_optimizer` does for an AdamW run.

The update scale matches AdamW's update RMS (the rule of Moonshot's "Muon is Scalable for LLM Training"): an
m x n semi-orthogonal matrix has RMS 1/sqrt(max(m, n)), so it is multiplied by 0.2 * sqrt(max(m, n)); every
matrix then moves by an update of RMS 0.2 times the learning rate, about what AdamW's normalised update gives in
steady training. AdamW's learning rate, schedule and weight decay therefore carry over unchanged
(PRETRAIN.md, "Optimizer"). The single-device step equals torch.optim.Muon's with
`adjust_lr_fn="match_rms_adamw"` (tested), which has no support for sharded parameters.

Sharded matrices (FSDP2 DTensors, sharded along their rows) are orthogonalised whole, each on one rank: in
chunks of as many matrices as there are ranks, one all-to-all sends every rank's rows of the chunk's j-th
matrix to rank j, which runs the iteration on the whole matrix and a second all-to-all sends every rank its
rows of the result. The iteration's work is spread round-robin and no rank ever holds every matrix. Under DDP
every rank has the whole gradient and computes every update itself.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

import torch
import torch.distributed as dist
import torch.nn as nn
from torch import Tensor
from torch.distributed.tensor import DTensor, Replicate, Shard
from torch.optim.adamw import adamw

# The quintic x -> a x + b x^3 + c x^5 applied to the singular values: its steep slope at 0 lifts small singular
# values to ~1 in five steps; the price is that every singular value of at least 1/500 of the matrix's Frobenius
# norm ends anywhere in [0.68, 1.21] rather than at 1 (tests/training/test_muon.py), which does not hurt training.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
UPDATE_RMS = 0.2  # the RMS of AdamW's update that Muon's update is scaled to
MOMENTUM = 0.95


def orthogonalize(matrix: Tensor, steps: int = NS_STEPS, eps: float = 1e-7) -> Tensor:
    """A semi-orthogonal approximation (singular values near 1) of `matrix` (m, n), or of each matrix of a batch
    (b, m, n), with its singular vectors, in bf16. The iteration runs on the wide orientation (m <= n), where
    X X^T is the smaller product."""
    a, b, c = NS_COEFFICIENTS
    x = matrix.to(torch.bfloat16)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    # dividing by the Frobenius norm (>= the spectral norm) puts every singular value in (0, 1]
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    multiply_add = torch.addmm if x.dim() == 2 else torch.baddbmm
    for _ in range(steps):
        gram = x @ x.mT
        x = multiply_add(x, multiply_add(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


def update_scale(shape: torch.Size | tuple[int, ...]) -> float:
    """The factor that gives an orthogonalised update of this shape an RMS of UPDATE_RMS."""
    return UPDATE_RMS * math.sqrt(max(shape[0], shape[1]))


def uses_muon(name: str, param: Tensor) -> bool:
    """Whether a parameter (by its name in the model) is a hidden weight matrix: a 2-D weight inside a
    transformer block (attention qkv and output projection, the MLP's three matrices)."""
    return param.ndim == 2 and ".h." in f".{name}"  # wrappers (compile, checkpointing) add to names, never ".h."


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Muon's matrices, then AdamW's decayed weights (embedding, head), then AdamW's undecayed vectors (norms)."""
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    if frozen:
        raise ValueError(
            f"--optimizer muon trains whole weight matrices, but {len(frozen)} parameters are frozen (LoRA "
            f"fine-tuning, e.g. {frozen[0]}): train adapters with --optimizer adamw"
        )
    muon, decay, no_decay = [], [], []
    for name, p in model.named_parameters():
        (muon if uses_muon(name, p) else decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": muon, "muon": True, "weight_decay": weight_decay},
        {"params": decay, "muon": False, "weight_decay": weight_decay},
        {"params": no_decay, "muon": False, "weight_decay": 0.0},
    ]


class MuonWithAdamW(torch.optim.Optimizer):
    """One optimizer over two kinds of groups: `muon=True` groups step by Muon (Nesterov momentum `momentum`,
    `ns_steps` Newton-Schulz steps, the RMS-matching scale), the others by AdamW (`betas`, `eps`; fused on
    CUDA). Every group takes the same `lr`, so one schedule drives both."""

    def __init__(
        self,
        groups: Iterable[dict],
        lr: float,
        weight_decay: float,
        betas: tuple[float, float],
        eps: float = 1e-8,
        momentum: float = MOMENTUM,
        ns_steps: int = NS_STEPS,
    ) -> None:
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            betas=betas,
            eps=eps,
            momentum=momentum,
            nesterov=True,
            ns_steps=ns_steps,
            muon=False,
        )
        super().__init__(list(groups), defaults)
        for group in self.param_groups:
            if group["muon"] and any(p.ndim != 2 for p in group["params"]):
                raise ValueError("Muon groups take 2-D weight matrices only")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                (self._muon_step if group["muon"] else self._adamw_step)(group, params)
        return loss

    def _adamw_step(self, group: dict, params: list[Tensor]) -> None:
        fused = all(p.is_cuda for p in params)
        for p in params:
            state = self.state[p]
            if not state:
                # where torch's AdamW keeps them: the step count on the device when fused, else on the CPU
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device if fused else "cpu")
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        states = [self.state[p] for p in params]
        beta1, beta2 = group["betas"]
        adamw(
            params,
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            [s["step"] for s in states],
            foreach=None if fused else True,
            fused=fused,
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )

    def _muon_step(self, group: dict, params: list[Tensor]) -> None:
        momentum, lr = group["momentum"], group["lr"]
        grads = [p.grad for p in params]
        buffers = []
        for p in params:
            if "momentum_buffer" not in self.state[p]:
                self.state[p]["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
            buffers.append(self.state[p]["momentum_buffer"])
        # the momentum as an average of gradients (its scale is the gradient's; the iteration normalises it anyway)
        torch._foreach_lerp_(buffers, grads, 1 - momentum)
        updates = torch._foreach_lerp(grads, buffers, momentum) if group["nesterov"] else buffers
        orthogonal = _orthogonalized(updates, group["ns_steps"])
        locals_ = [_local(p) for p in params]
        if group["weight_decay"]:
            torch._foreach_mul_(locals_, 1 - lr * group["weight_decay"])
        for p, local, update in zip(params, locals_, orthogonal):
            local.add_(update, alpha=-lr * update_scale(p.shape))


def _local(t: Tensor) -> Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def _orthogonalized(updates: list[Tensor], steps: int) -> list[Tensor]:
    """Each update orthogonalised (bf16), in the layout of this rank's part of it."""
    if not any(isinstance(u, DTensor) for u in updates):
        # matrices of one shape in one batched iteration: a few large matmuls instead of many (tiny_LLaMA_1b's
        # 110 matrices come in 4 shapes)
        by_shape = defaultdict(list)
        for i, u in enumerate(updates):
            by_shape[tuple(u.shape)].append(i)
        out: list[Tensor | None] = [None] * len(updates)
        for indices in by_shape.values():
            batch = orthogonalize(torch.stack([updates[i].to(torch.bfloat16) for i in indices]), steps)
            for i, result in zip(indices, batch.unbind()):
                out[i] = result
        return out  # type: ignore[return-value]
    by_group = defaultdict(list)  # the process group each matrix is sharded over -> its indices
    for i, u in enumerate(updates):
        by_group[_shard_group(u)].append(i)
    result: list[Tensor | None] = [None] * len(updates)
    for group, indices in by_group.items():
        for i, update in zip(indices, _orthogonalize_sharded([updates[i] for i in indices], group, steps)):
            result[i] = update
    return result  # type: ignore[return-value]


def _shard_group(t: DTensor):
    """The process group over which `t` is split along its rows (FSDP2: Shard(0); HSDP: Replicate, Shard(0))."""
    shards = [dim for dim, placement in enumerate(t.placements) if placement == Shard(0)]
    others_replicated = all(isinstance(p, Replicate) for d, p in enumerate(t.placements) if d not in shards)
    if len(shards) != 1 or not others_replicated:
        raise NotImplementedError(
            f"Muon handles matrices sharded along their rows (FSDP2) or replicated, not placements {t.placements}"
        )
    return t.device_mesh.get_group(shards[0])


def _rows_of_rank(rows: int, rank: int, world: int) -> int:
    """Rows of a Shard(0) tensor on `rank` (torch.chunk's split: ceil(rows / world) each, the last ranks fewer)."""
    per_rank = -(-rows // world)
    return max(0, min(rows, (rank + 1) * per_rank) - rank * per_rank)


def _orthogonalize_sharded(updates: list[DTensor], group, steps: int) -> list[Tensor]:
    """Orthogonalise row-sharded matrices whole, matrix `start + j` of each chunk on rank j (see the module doc)."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    pieces = [u.to_local().to(torch.bfloat16).contiguous() for u in updates]
    out: list[Tensor] = []
    for start in range(0, len(updates), world):
        chunk = list(range(start, min(start + world, len(updates))))
        owned = start + rank if start + rank < len(updates) else None
        # 1. every rank sends its rows of matrix start + j to rank j
        mine = [pieces[i].numel() for i in chunk] + [0] * (world - len(chunk))
        recv_sizes = [0] * world
        if owned is not None:
            shape = updates[owned].shape
            recv_sizes = [_rows_of_rank(shape[0], k, world) * shape[1] for k in range(world)]
        gathered = _all_to_all(torch.cat([pieces[i].reshape(-1) for i in chunk]), recv_sizes, mine, group)
        # 2. the owner orthogonalises the whole matrix (the rows arrive in rank order) and sends back each
        #    rank's rows of the result
        back_sizes = [0] * world
        if owned is not None:
            outgoing, back_sizes = orthogonalize(gathered.view(shape), steps).reshape(-1), recv_sizes
        else:
            outgoing = gathered.new_empty(0)
        returned = _all_to_all(outgoing, mine, back_sizes, group)
        out += [part.view(pieces[i].shape) for i, part in zip(chunk, returned.split(mine))]
    return out


def _all_to_all(send: Tensor, recv_sizes: list[int], send_sizes: list[int], group) -> Tensor:
    """dist.all_to_all_single of a bf16 vector, carried as bytes (they only move; gloo takes no bf16 nor int16)."""
    recv = send.new_empty(sum(recv_sizes))
    size = send.element_size()
    dist.all_to_all_single(
        recv.view(torch.uint8),
        send.view(torch.uint8),
        [n * size for n in recv_sizes],
        [n * size for n in send_sizes],
        group=group,
    )
    return recv
