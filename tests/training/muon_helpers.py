"""The sharded orthogonalisation of lit_gpt.training.muon on several gloo processes (torch.multiprocessing
spawns `shard_and_orthogonalize` once per rank)."""

from __future__ import annotations

import torch
import torch.distributed as dist

# rows not divisible by 2 or 3 (uneven shards, a rank with no rows of the 1-row matrix), tall, wide and square
SHAPES = [(7, 12), (12, 7), (9, 9), (1, 5), (16, 4), (5, 16), (11, 3)]


def matrices(seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) for shape in SHAPES]


def shard_and_orthogonalize(rank: int, world: int, init_file: str, out_file: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    from lit_gpt.training.muon import _orthogonalized

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        mesh = init_device_mesh("cpu", (world,))
        sharded = [distribute_tensor(m, mesh, [Shard(0)]) for m in matrices()]
        local = _orthogonalized(sharded, steps=5)
        assert [t.shape for t in local] == [s.to_local().shape for s in sharded]
        parts = [None] * world
        dist.all_gather_object(parts, [t.float() for t in local])
        if rank == 0:
            torch.save([torch.cat([p[i] for p in parts]) for i in range(len(SHAPES))], out_file)
    finally:
        dist.destroy_process_group()
