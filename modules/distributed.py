"""torch.distributed for `torchrun --nproc_per_node N script.py ...`.

One process per device. Every rank draws the same global batch of example
indices from an identically seeded generator and keeps its own contiguous slice,
so N processes see exactly the examples one process would, and DDP's gradient
mean over equal slices equals the gradient of the global batch's mean loss: the
batch size and learning rate in a gin file mean the same thing for any N.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistEnv:
    """Join the process group torchrun describes in the environment (NCCL on GPUs, gloo on the CPU).

    `device`: None picks CUDA when available; "cpu" forces the CPU (and gloo).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    dev = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def shard(global_batch: Tensor, env: DistEnv) -> Tensor:
    """This rank's slice of a global batch (first dimension), equal-sized on every rank."""
    if global_batch.shape[0] % env.world_size:
        raise ValueError(
            f"batch_size {global_batch.shape[0]} is not divisible by the number of processes {env.world_size}"
        )
    per_rank = global_batch.shape[0] // env.world_size
    return global_batch[env.rank * per_rank : (env.rank + 1) * per_rank]


def all_reduce_sum(t: Tensor, env: DistEnv) -> Tensor:
    """Sum a tensor over ranks (metrics' numerators and denominators); identity in one process."""
    if env.is_distributed:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_module(module: nn.Module, env: DistEnv, src: int = 0) -> None:
    """Copy rank `src`'s parameters and buffers to every rank (after k-means init or code restarts)."""
    if env.is_distributed:
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=src)


def wrap_ddp(module: nn.Module, env: DistEnv) -> nn.Module:
    if not env.is_distributed:
        return module
    ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def barrier(env: DistEnv) -> None:
    if env.is_distributed:
        dist.barrier()


def cleanup(env: DistEnv) -> None:
    if env.is_distributed and dist.is_initialized():
        dist.destroy_process_group()
