"""What train_sasrec.py feeds SASRec (modules/sasrec.py): the training rows built from TIGER's leave-one-out
training examples, and the sampled negatives of the BCE loss. (Its full ranking: evaluation/full_ranking.py.)

Training rows. TIGER trains on every item of a user's sequence s_0 .. s_{n-1} except the first and the
last two, target s_p seeing its history s_{max(0, p-L)} .. s_{p-1} (L = max_seq_len; data/splits.py).
SASRec trains all positions of a sequence in one causal pass, position t predicting s_{t+1} from
s_0 .. s_t. Both agree exactly when a row is cut as follows ("windows"):
  - the user's first window s_0 .. s_{m-1}, m = min(n - 3, L), trains all m positions: targets
    s_1 .. s_m, each with its whole history (at most L items, so nothing is cut);
  - each later target s_p, p > L, gets a window of its own, s_{p-L} .. s_{p-1}, trained at the last
    position only: an earlier position of that window would see fewer than the L items TIGER gives it.
So every training example of SeqData is trained exactly once per epoch, with the same visible history
(tests/test_train_sasrec.py checks the two sets are equal). On Beauty that is 131,413 targets in 36,582
rows instead of 131,413 rows of one target each ("examples", also available).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from data.processed import SeqData

ROW_MODES = ("windows", "examples")


@dataclass
class TrainRows:
    inputs: Tensor  # [R, L] item ids, oldest first, right-padded with -1
    labels: Tensor  # [R, L] the item position t must predict, -1 = position not trained
    users: Tensor   # [R] the row's user (for the negatives)

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def n_targets(self) -> int:
        return int((self.labels >= 0).sum())


def training_rows(train: SeqData, mode: str = "windows") -> TrainRows:
    """The training examples of `train` (SeqData's "train" subset) as rows of causal passes (module docstring).
    mode "examples": one row per example, trained at its last position only."""
    if mode not in ROW_MODES:
        raise ValueError(f"mode {mode!r}: expected one of {ROW_MODES}")
    M, L = len(train), train.max_seq_len
    lengths, users = train.history_lengths, train.user_ids  # [M]; SeqData keeps a user's examples together, oldest first
    if mode == "examples":
        ends = torch.ones(M, dtype=torch.bool)
        full = torch.zeros(M, dtype=torch.bool)
    else:
        last_of_user = torch.ones(M, dtype=torch.bool)
        last_of_user[:-1] = users[1:] != users[:-1]
        # A row ends at an example no later example of its user extends: the user's last one, or one whose
        # history is already L long (its successor's history drops the oldest item instead of growing).
        ends = last_of_user | (lengths == L)
        # the first row end of each user closes the user's first window, trained at every position
        end_index = torch.nonzero(ends).squeeze(1)
        first = torch.ones(len(end_index), dtype=torch.bool)
        first[1:] = users[end_index[1:]] != users[end_index[:-1]]
        full = torch.zeros(M, dtype=torch.bool)
        full[end_index[first]] = True
    index = torch.nonzero(ends).squeeze(1)  # [R] the example that closes each row
    inputs = train.history_batch(index)  # [R, L]
    row_lengths = lengths[index]  # [R]
    targets = train.targets[index]  # [R]
    labels = torch.full_like(inputs, -1)
    labels[torch.arange(len(index)), row_lengths - 1] = targets  # every row trains its last position
    # a first window also trains its earlier positions: position t predicts the row's item t + 1
    shifted = torch.cat([inputs[:, 1:], torch.full((len(index), 1), -1)], dim=1)  # [R, L]
    positions = torch.arange(L)
    earlier = full[index, None] & (positions[None, :] < (row_lengths - 1)[:, None])
    labels = torch.where(earlier, shifted, labels)
    rows = TrainRows(inputs, labels, users[index])
    if rows.n_targets != M:  # each example trained exactly once: a broken SeqData layout is caught here
        raise AssertionError(f"{rows.n_targets} trained positions for {M} training examples")
    return rows


def user_item_keys(train: SeqData) -> Tensor:
    """Sorted keys user * n_items + item of every item in each user's training part, s_0 .. s_{n-3}:
    the first item of the user's first example and every training target (the items the code's
    sampler avoids: its `ts = set(user_train[user])`)."""
    users, lengths = train.user_ids, train.history_lengths
    first_of_user = torch.ones(len(users), dtype=torch.bool)
    first_of_user[1:] = users[1:] != users[:-1]
    firsts = torch.nonzero(first_of_user & (lengths == 1)).squeeze(1)  # history of length 1: [s_0]
    first_items = train.history_batch(firsts)[:, 0]
    keys = torch.cat([users[firsts] * train.n_items + first_items, users * train.n_items + train.targets])
    return torch.unique(keys)  # sorted


def sample_negatives(users: Tensor, n_items: int, keys: Tensor, generator: torch.Generator) -> Tensor:
    """users [N] -> [N] items drawn uniformly from the items each user never met in training (`keys`
    from user_item_keys), one per trained position, redrawn every step as in the code's sampler."""
    negatives = torch.randint(n_items, users.shape, generator=generator)
    while True:
        query = users * n_items + negatives
        where = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
        seen = keys[where] == query  # [N]
        if not seen.any():
            return negatives
        negatives[seen] = torch.randint(n_items, (int(seen.sum()),), generator=generator)

