"""torch.distributed for `torchrun --nproc_per_node N script.py ...`.

One process per device. Every rank draws the same global batch of example
indices from an identically seeded generator and keeps its own contiguous slice,
so N processes see exactly the examples one process would, and DDP's gradient
mean over equal slices equals the gradient of the global batch's mean loss: the
batch size and learning rate in a gin file mean the same thing for any N.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


def all_reduce_min(t: Tensor, env: DistEnv) -> Tensor:
    """Minimum of a tensor over ranks (the first non-finite step any rank saw); identity in one process."""
    if env.is_distributed:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t


def all_gather_cat(t: Tensor, env: DistEnv) -> Tensor:
    """Concatenate equal-shaped per-rank tensors along dim 0 in rank order: the global batch's rows
    (shard's inverse), e.g. the residuals a dead-code restart samples from."""
    if not env.is_distributed:
        return t
    parts = [torch.empty_like(t) for _ in range(env.world_size)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def all_gather_objects(obj: object, env: DistEnv) -> list:
    """Every rank's `obj` (e.g. its RNG state), in rank order; [obj] in one process."""
    if not env.is_distributed:
        return [obj]
    out: list = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


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


@contextmanager
def main_rank_first(env: DistEnv) -> Iterator[None]:
    """Rank 0 runs the block first (it builds the caches), the other ranks after it (they read them)."""
    if not env.is_main:
        barrier(env)
    yield
    if env.is_main:
        barrier(env)


def cleanup(env: DistEnv) -> None:
    if env.is_distributed and dist.is_initialized():
        # every rank arrives before any tears down: a rank that destroys the group while another still
        # has gloo work in flight (rank 0 writing files, say) can abort the other with SIGABRT
        dist.barrier()
        dist.destroy_process_group()


def rank_rng_states(env: DistEnv) -> list[dict]:
    """Every rank's RNG state (dropout, Gumbel noise and restarts draw per rank), for a checkpoint."""
    from runtime.checkpointing import rng_state

    return all_gather_objects(rng_state(), env)


def restore_rank_rng_states(states: list[dict] | dict, env: DistEnv) -> None:
    """Continue each rank's RNG stream from a checkpoint. With another number of processes the
    batches still continue exactly (they depend on the step only); the noise streams cannot."""
    from runtime.checkpointing import set_rng_state

    states = [states] if isinstance(states, dict) else states
    if len(states) != env.world_size and env.is_main:
        print(f"resuming {len(states)}-process RNG state with {env.world_size} processes: batches continue "
              "exactly, random noise (dropout, restarts) does not", file=sys.stderr)
    if env.rank < len(states):
        set_rng_state(states[env.rank])
