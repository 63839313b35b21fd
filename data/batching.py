"""Stage 2's batches: a split's examples as semantic IDs (`sem_id_batch`, `data_batch`, used by
training, validation and evaluation alike), and training batches without padding work and without
the host in the loop, three independent pieces each switched on from train_decoder.py's gin bindings:

- `length_bucketed_batches`: Beauty's training histories average 6.7 of the 20 allowed items, so
  two thirds of the encoder's tokens are padding (bench/results/profile_cpu.md), and every random
  batch of a few hundred examples holds a full-length history, so trimming a random batch to its
  longest history saves nothing. Here an epoch's shuffled examples are cut into pools of
  `pool_batches` batches; inside a pool examples are ordered by history length and cut into
  batches, which are then shuffled. Each batch is trimmed to its own longest history
  (`max_lengths`). Each example is still seen exactly once per epoch.
- `ResidentExamples`: a split stored on the training device once, flat: the interaction table's
  item ids, each example's target row, history length and user, and the semantic-ID table. A batch
  is gathered there from an index tensor on the same device (its histories cut from the flat
  table, as `SeqData.history_batch` does on the host), where the host path (`history_batch` +
  `sem_id_batch` + `.to`) costs more than a whole GPU step. Memory grows with the interactions,
  not examples x max_seq_len: MovieLens 32M's [M, L] history matrix would be about 50 GB.
- `window_batch`, `ResidentWindows`: the same for all-positions training (train.all_positions,
  data/windows.py): a batch of windows, each a run of one user's items whose every position from its
  first target on is trained in one pass: history [B, W, T] the window's items, target [B, W, T] the
  same items where they are trained targets, -1 elsewhere.
- `crop_histories`: train.history_crop (not the paper's): some training examples keep only the most recent
  part of their history, another view of the example each epoch (studies/results/history_crop_rule.txt).
- `micro_batches`: gradient accumulation. A batch's activations grow with batch x history length;
  MovieLens' 801-token encoder inputs keep about 256 MiB per example on the CPU (attention with
  dropout takes PyTorch's math path there), so the paper's batch of 256 does not fit in 24 GiB
  at once, but does as 8 micro-batches of 32 whose gradients add up to the batch's.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from data.processed import SeqData
from data.splits import gather_histories
from data.windows import TrainingWindows, gather_windows


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


def trim_history(batch: dict[str, Tensor], length: int, min_length: int = 1) -> dict[str, Tensor]:
    """Drop the history columns past max(length, min_length) (right padding only when length >= every
    history of the batch): history [B, L, T] -> [B, length, T], and an all-positions batch's target
    [B, L, T] with it. The encoder sees the same real tokens at the same positions; padded ones are masked
    as keys and never read. For torch.compile, which compiles again for new strides and for a length of 1:
    contiguous, and min_length=2 keeps a padded column."""
    width = max(int(length), min_length)
    trimmed = {**batch, "history": batch["history"][:, :width].contiguous()}
    if batch["target"].dim() == 3:  # all positions: one target row per history position
        trimmed["target"] = batch["target"][:, :width].contiguous()
    return trimmed


def crop_histories(history: Tensor, probability: float, draws: Tensor) -> Tensor:
    """history [B, L, T] semantic IDs, oldest first, right-padded with -1; draws [2, B] uniform in [0, 1) (CPU)
    -> the same shape, where each example whose first draw is below `probability` keeps only its last k of n
    items, k = 1 + floor(second draw x n) (uniform in 1..n), moved to the front (the layout every history has),
    the rest -1. The others are returned as they are."""
    B, L, T = history.shape
    cropped, fraction = draws.to(history.device)  # [B] each
    n = (history[..., 0] >= 0).sum(dim=1)  # [B] real items
    k = torch.where(cropped < probability, (fraction * n).long() + 1, n).clamp(max=n)  # [B] items kept, 1..n
    positions = torch.arange(L, device=history.device)  # [L]
    source = (n - k).unsqueeze(1) + positions  # [B, L] where each kept item comes from
    kept = history.gather(1, rearrange(source.clamp(max=L - 1), "b l -> b l 1").expand(B, L, T))
    return kept.masked_fill(rearrange(positions >= k.unsqueeze(1), "b l -> b l 1"), -1)


def micro_batches(batch: dict[str, Tensor], size: int | None) -> list[dict[str, Tensor]]:
    """A batch of B examples (or all-positions windows) cut along dim 0 into ceil(B / size) micro-batches
    of at most `size` (None: [batch]). The loss of the batch is the sum of their mean losses, each
    weighted by its share of the batch's targets (`n_targets`)."""
    if size is None or size >= len(batch["target"]):
        return [batch]
    pieces = {k: v.split(size) for k, v in batch.items()}
    return [{k: v[i] for k, v in pieces.items()} for i in range(len(pieces["target"]))]


def n_targets(batch: dict[str, Tensor]) -> int | Tensor:
    """The targets a batch trains: one per row (target [B, T]), or in all-positions mode (target [B, W, T])
    the positions that are not -1, counted on the batch's device (a tensor, not read back: no sync)."""
    target = batch["target"]
    return len(target) if target.dim() == 2 else (target[..., 0] >= 0).sum()


def sem_id_batch(batch: dict[str, Tensor], sem_ids: Tensor) -> dict[str, Tensor]:
    """Item ids -> semantic IDs. batch: user_id [B], history [B, L] item ids (-1 = padding),
    target [B]; sem_ids [n_items, T] (on the batch's device) -> user_ids, history [B, L, T], target [B, T], target_item."""
    history = batch["history"]
    history_codes = sem_ids[history.clamp(min=0)]
    history_codes = history_codes.masked_fill(rearrange(history < 0, "b l -> b l 1"), -1)
    return {"user_ids": batch["user_id"], "history": history_codes,
            "target": sem_ids[batch["target"]], "target_item": batch["target"]}


def data_batch(data: SeqData, index: torch.Tensor, sem_ids: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    """Examples `index` of a split as semantic IDs, on `device`."""
    raw = {"user_id": data.user_ids[index], "history": data.history_batch(index), "target": data.targets[index]}
    return {k: v.to(device) for k, v in sem_id_batch(raw, sem_ids).items()}


def window_sem_id_batch(user_ids: Tensor, window: Tensor, is_target: Tensor, sem_ids: Tensor) -> dict[str, Tensor]:
    """user_ids [B], window [B, W] item ids (-1 = padding), is_target [B, W] -> user_ids, history [B, W, T]
    the window's semantic IDs (-1 padded), target [B, W, T] the same where a position is trained, else -1."""
    history = sem_ids[window.clamp(min=0)].masked_fill(rearrange(window < 0, "b w -> b w 1"), -1)
    return {"user_ids": user_ids, "history": history,
            "target": history.masked_fill(rearrange(~is_target, "b w -> b w 1"), -1)}


def window_batch(windows: TrainingWindows, index: Tensor, sem_ids: Tensor, device: torch.device) -> dict[str, Tensor]:
    """Windows `index` [B] of an all-positions training split as semantic IDs (window_sem_id_batch), on `device`."""
    window, is_target = windows.items_batch(index)
    batch = window_sem_id_batch(windows.user_ids[index], window, is_target, sem_ids)
    return {k: v.to(device) for k, v in batch.items()}


class ResidentExamples:
    """A SeqData split on `device`, flat: item ids [N] of the whole interaction table (int32), and per
    example [M] its target's row in that table, its history length and its user (int32); history
    lengths are also kept on the CPU (trimming needs them without a device sync). Plus the
    semantic-ID table [n_items, T]. Nothing of size M x max_seq_len is stored."""

    def __init__(self, data: SeqData, sem_ids: Tensor, device: torch.device) -> None:
        if len(data.items) >= 2**31:
            raise ValueError(f"{len(data.items):,} interactions: more than int32 row numbers can address")
        self.items = data.items.to(device, torch.int32)                # [N] item ids, grouped by user, oldest first
        self.target_rows = data.target_rows.to(device, torch.int32)    # [M]
        self.history_lengths = data.history_lengths.to(device, torch.int32)  # [M]
        self.user_ids = data.user_ids.to(device, torch.int32)           # [M]
        self.lengths = data.history_lengths.clone()                     # [M] CPU
        self.sem_ids = sem_ids.to(device)                               # [n_items, T]
        self.max_seq_len = data.max_seq_len
        self.device = device

    def __len__(self) -> int:
        return len(self.target_rows)

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        """index [B] on `device` -> the batch `data_batch` would build, on `device`."""
        rows = self.target_rows[index]  # [B]
        history = gather_histories(self.items, rows, self.history_lengths[index], self.max_seq_len)  # [B, L]
        raw = {"user_id": self.user_ids[index].long(), "history": history.long(), "target": self.items[rows].long()}
        return sem_id_batch(raw, self.sem_ids)


class ResidentWindows:
    """TrainingWindows on `device`, flat as ResidentExamples: the table's item ids [N] (int32), per window [W]
    its start, length, first target and user (int32), the semantic-ID table. A batch is gathered there."""

    def __init__(self, windows: TrainingWindows, sem_ids: Tensor, device: torch.device) -> None:
        if len(windows.items) >= 2**31:
            raise ValueError(f"{len(windows.items):,} interactions: more than int32 row numbers can address")
        self.items = windows.items.to(device, torch.int32)                 # [N]
        self.starts, self.lengths, self.first_targets, self.user_ids = (
            t.to(device, torch.int32) for t in (windows.starts, windows.lengths, windows.first_targets, windows.user_ids))
        self.sem_ids = sem_ids.to(device)                                   # [n_items, T]
        self.window_len = windows.window_len

    def __len__(self) -> int:
        return len(self.starts)

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        """index [B] on `device` -> the batch `window_batch` would build, on `device`."""
        window, is_target = gather_windows(self.items, self.starts[index], self.lengths[index],
                                           self.first_targets[index], self.window_len)
        return window_sem_id_batch(self.user_ids[index].long(), window.long(), is_target, self.sem_ids)
