"""Training batches for stage 2 without padding work and without the host in the loop.

Two independent pieces, both switched on from train_decoder.py's gin bindings:

- `length_bucketed_batches`: Beauty's training histories average 6.7 of the 20 allowed items, so
  two thirds of the encoder's tokens are padding (bench/results/profile_cpu.md), and every random
  batch of a few hundred examples holds a full-length history, so trimming a random batch to its
  longest history saves nothing. Here an epoch's shuffled examples are cut into pools of
  `pool_batches` batches; inside a pool examples are ordered by history length and cut into
  batches, which are then shuffled. Each batch is trimmed to its own longest history
  (`max_lengths`). Each example is still seen exactly once per epoch.
- `ResidentExamples`: a split's histories, targets, users and the semantic-ID table stored on the
  training device once; a batch is a gather there from an index tensor on the same device,
  where the host path (`SeqData.history_batch` + `sem_id_batch` + `.to`) costs more than a
  whole GPU step.
"""
from __future__ import annotations

import torch
from torch import Tensor

from modules.model import sem_id_batch


def length_bucketed_batches(lengths: Tensor, batch_size: int, generator: torch.Generator,
                            pool_batches: int = 64) -> tuple[Tensor, Tensor]:
    """lengths [M] history lengths (CPU) -> (batches [n_batches, batch_size] example indices,
    max_lengths [n_batches] the longest history of each batch), n_batches = M // batch_size.
    A function of `generator`'s state only: seeded per epoch, a resumed run sees the same batches."""
    n_batches = len(lengths) // batch_size
    perm = torch.randperm(len(lengths), generator=generator)[:n_batches * batch_size]
    pools = []
    for pool in perm.split(pool_batches * batch_size):  # the last pool may hold fewer batches
        order = torch.sort(lengths[pool], stable=True).indices  # stable: ties keep the shuffled order
        pools.append(pool[order])
    batches = torch.cat(pools).view(n_batches, batch_size)
    batches = batches[torch.randperm(n_batches, generator=generator)]  # pools' short and long batches interleave
    return batches, lengths[batches].max(dim=1).values


def trim_history(batch: dict[str, Tensor], length: int) -> dict[str, Tensor]:
    """Drop the history columns past `length` (right padding only when length >= every history
    of the batch): history [B, L, T] -> [B, length, T]. The encoder sees the same real tokens at
    the same positions; padded ones are masked as keys and never read."""
    return {**batch, "history": batch["history"][:, :max(int(length), 1)]}


class ResidentExamples:
    """A SeqData split on `device`: histories [M, L] item ids (-1 padded), user ids, targets,
    history lengths (also kept on the CPU: trimming needs them without a device sync), and the
    semantic-ID table [n_items, T]."""

    def __init__(self, data, sem_ids: Tensor, device: torch.device) -> None:
        self.histories = data.histories.to(device)        # [M, L]
        self.user_ids = data.user_ids.to(device)          # [M]
        self.targets = data.targets.to(device)            # [M]
        self.lengths = data.history_lengths.clone()       # [M] CPU
        self.sem_ids = sem_ids.to(device)                 # [n_items, T]
        self.device = device

    def __len__(self) -> int:
        return len(self.targets)

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        """index [B] on `device` -> the batch `modules.retrieval.data_batch` would build, on `device`."""
        raw = {"user_id": self.user_ids[index], "history": self.histories[index], "target": self.targets[index]}
        return sem_id_batch(raw, self.sem_ids)
