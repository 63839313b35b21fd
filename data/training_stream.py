"""train_decoder.py's training batches: step -> this process's batch, a function of (seed, step) only, so a
resumed run trains on exactly the batches an uninterrupted one would.

A batch index counts training examples (user, target position), or with all_positions windows of them
(data/windows.py). Each epoch is a permutation of them without replacement (`epoch_batches`), optionally
grouped by length and trimmed to each batch's longest history (data/batching.py); with DDP every rank draws
the same global batch and keeps its slice. Batches are gathered on the host, or with `resident` from a flat
copy of the split on the training device (data/batching.py, ResidentExamples and ResidentWindows).
"""
from __future__ import annotations

import torch
from torch import Tensor

from data.batching import (ResidentExamples, ResidentWindows, crop_histories, data_batch, length_bucketed_batches,
                           trim_history, window_batch)
from data.processed import SeqData
from data.windows import TrainingWindows
from runtime.distributed import DistEnv, shard
from runtime.errors import ConfigError


def epoch_batches(lengths: Tensor, batch_size: int, seed: int, epoch: int,
                  bucket_by_length: bool) -> tuple[Tensor, Tensor | None]:
    """Epoch `epoch`'s batches without replacement over the examples (or all-positions windows) whose encoder
    inputs hold lengths [M] items: indices [steps_per_epoch, batch_size] of randperm(seed + epoch), and with
    bucket_by_length that permutation grouped by length plus each batch's longest (data/batching.py)."""
    generator = torch.Generator().manual_seed(seed + epoch)
    if bucket_by_length:
        return length_bucketed_batches(lengths, batch_size, generator)
    steps_per_epoch = len(lengths) // batch_size
    return torch.randperm(len(lengths), generator=generator)[:steps_per_epoch * batch_size].view(steps_per_epoch, batch_size), None


class TrainingStream:
    """The training split `data` as the batches of train_decoder.py's steps, for this process of `env`.

    `batch(step)` -> (batch, rank_weight): the batch as data/batching.py builds it on `device`, per example
    or all positions; `rank_weight` is what train_step scales this rank's loss by (DDP with windows: the
    ranks' slices hold different numbers of targets; 1 otherwise). `min_length`: trimmed batches keep at
    least this many history columns (2 for a compiled forward, which must never see 1). `history_crop`: the
    chance that an example keeps only a random most recent part of its history (crop_histories; per example
    only), drawn from (seed, step) for the global batch, so a resumed run and every rank see the same crops."""

    def __init__(self, data: SeqData, sem_ids: Tensor, batch_size: int, seed: int, *, all_positions: bool,
                 bucket_by_length: bool, resident: bool, device: torch.device, env: DistEnv, min_length: int = 1,
                 history_crop: float = 0.0) -> None:
        self.data, self.sem_ids, self.batch_size, self.seed = data, sem_ids, batch_size, seed
        self.bucket_by_length, self.device, self.env, self.min_length = bucket_by_length, device, env, min_length
        if history_crop and all_positions:
            raise ConfigError("train.history_crop > 0 crops one example's history; all-positions windows have none: "
                              "bind one of them", binding="history_crop")
        self.history_crop = history_crop
        self.windows = TrainingWindows(data) if all_positions else None
        self.n_units = len(self.windows) if all_positions else len(data)  # what a batch index counts
        self.lengths = self.windows.lengths if all_positions else data.history_lengths  # [n_units] encoder items
        unit = "all-positions windows" if all_positions else "training examples"
        if batch_size > self.n_units:
            raise ConfigError(f"train.batch_size = {batch_size} exceeds the {self.n_units} {unit}", binding="batch_size")
        self.steps_per_epoch = self.n_units // batch_size  # the GLOBAL batch: each of N ranks trains on batch_size / N
        self.examples_per_step = batch_size * (len(data) / self.n_units)  # all positions: targets per window, on average
        self.resident = None
        if resident:
            self.resident = (ResidentWindows(self.windows, sem_ids, device) if all_positions
                             else ResidentExamples(data, sem_ids, device))
        self._epoch, self._batches, self._max_lengths, self._rank_weights = -1, None, None, None

    def _start_epoch(self, epoch: int) -> None:
        batches, self._max_lengths = epoch_batches(self.lengths, self.batch_size, self.seed, epoch, self.bucket_by_length)
        self._rank_weights = None
        if self.windows is not None and self.env.is_distributed:  # ranks' slices hold different numbers of targets
            targets = self.windows.n_targets[batches]  # [steps_per_epoch, batch_size], CPU: no sync
            self._rank_weights = self.env.world_size * shard(targets.T, self.env).sum(dim=0) / targets.sum(dim=1)
        self._batches = batches.to(self.device) if self.resident is not None else batches  # once per epoch
        self._epoch = epoch

    def batch(self, step: int) -> tuple[dict[str, Tensor], float]:
        epoch, offset = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._start_epoch(epoch)
        index = shard(self._batches[offset], self.env)  # the global batch is identical on every rank
        if self.resident is not None:
            batch = self.resident.batch(index)
        elif self.windows is not None:
            batch = window_batch(self.windows, index, self.sem_ids, self.device)
        else:
            batch = data_batch(self.data, index, self.sem_ids, self.device)
        if self._max_lengths is not None:  # the global batch's longest history (CPU, no sync)
            batch = trim_history(batch, self._max_lengths[offset], min_length=self.min_length)
        if self.history_crop:  # draws for the global batch from (seed, step), this rank's slice of them
            generator = torch.Generator().manual_seed(((self.seed << 32) + step) % 2**63)  # any seed, one stream a step
            draws = torch.rand(2, self.batch_size, generator=generator)
            batch = {**batch, "history": crop_histories(batch["history"], self.history_crop, shard(draws.T, self.env).T)}
        return batch, 1.0 if self._rank_weights is None else float(self._rank_weights[offset])
