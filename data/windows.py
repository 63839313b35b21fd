"""All-positions training examples (train.all_positions): each user's training items as windows of the
flat interaction table, each window encoded once with every one of its targets trained in the same pass.

Per example (the paper's way) a target at user position p is one example with its own copy of the
history, the min(p, m) items before it (m = max_seq_len): a MovieLens user with 159 ratings is encoded
159 times. Here a window is a run of consecutive rows of one user, [start, start + length), and each of
its positions from `first_target` on is a training target, seen (modules/model.py, causal_encoder) from
the window's items before it, at most m of them. Windows are cut so that

- every training target keeps its full history: the first window of a user starts at the user's first
  item (its targets' histories are the whole prefix, as per example); a later window starts m items before
  its first target, and those m items are context only;
- no target is trained twice per epoch: windows of one user train disjoint, consecutive runs of targets;
- a window holds at most `window_len` items (the default 2m: a later window then trains m targets on 2m
  items; a window's attention costs ~(window items)^2, so per trained target ~window_len^2 / (window_len - m),
  least at window_len = 2m).

The validation and test items (each user's last two) are in no window: a window ends at the user's last
training target. Everything is index arithmetic on the flat table (rows grouped by user, oldest first):
nothing of size windows x window_len is stored; `gather_windows` cuts a batch's windows from the table on
any device (the CPU, or a resident store's GPU: data/batching.py).
"""
from __future__ import annotations

import torch
from torch import Tensor

from data.processed import SeqData
from data.splits import gather_histories


def cut_windows(target_rows: Tensor, user_ids: Tensor, max_seq_len: int,
                window_len: int) -> tuple[Tensor, Tensor, Tensor]:
    """Training targets -> windows. target_rows [M]: each target's row in the flat table, grouped by user and
    ascending, one user's targets on consecutive rows right after the user's first item (data/splits.py's
    train split); user_ids [M]: each target's user. Returns, per window [W]: starts (row of its first item),
    lengths (its items) and first_targets (its first target's position in the window: 1 in a user's first
    window, max_seq_len in a later one). Window w trains rows starts[w] + first_targets[w] ..
    starts[w] + lengths[w] - 1."""
    if window_len <= max_seq_len:
        raise ValueError(f"window_len={window_len} must exceed max_seq_len={max_seq_len}: a later window holds "
                         "max_seq_len items of context before its first target")
    if len(target_rows) == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty.clone(), empty.clone()
    target_rows, user_ids = target_rows.long(), user_ids.long()
    new_user = torch.ones(len(user_ids), dtype=torch.bool)
    new_user[1:] = user_ids[1:] != user_ids[:-1]
    if ((target_rows[1:] - target_rows[:-1] != 1) & ~new_user[1:]).any():
        raise ValueError("one user's training targets must lie on consecutive rows of the table")
    first_row = target_rows[new_user]                                   # [U] each user's first target (position 1)
    n_targets = torch.diff(torch.nonzero(new_user).squeeze(1), append=torch.tensor([len(user_ids)]))  # [U]
    stride = window_len - max_seq_len                                   # targets a later window trains
    later = (n_targets - (window_len - 1)).clamp(min=0)                 # targets left after the first window
    n_windows = 1 + (later + stride - 1) // stride                      # [U]
    user = torch.repeat_interleave(torch.arange(len(first_row)), n_windows)  # [W] user of each window
    k = torch.arange(len(user)) - torch.repeat_interleave(torch.cumsum(n_windows, 0) - n_windows, n_windows)  # [W]
    # window 0: rows first-1 .. ; window k >= 1 trains from first + (window_len - 1) + (k - 1) * stride on
    first_trained = first_row[user] + (k > 0) * (window_len - 1 + (k - 1) * stride)  # [W]
    first_targets = torch.where(k == 0, 1, max_seq_len)                 # [W]
    starts = first_trained - first_targets
    ends = torch.minimum(starts + window_len, first_row[user] + n_targets[user])  # one past the user's last target
    return starts, ends - starts, first_targets


def gather_windows(items: Tensor, starts: Tensor, lengths: Tensor, first_targets: Tensor,
                   width: int) -> tuple[Tensor, Tensor]:
    """items [N] the flat table; starts, lengths, first_targets [B] -> (window items [B, width], oldest first,
    right-padded with -1; is_target [B, width] bool: the window's trained positions). On the device of `items`."""
    window = gather_histories(items, starts + lengths, lengths, width)  # the `lengths` rows before the window's end
    position = torch.arange(width, device=items.device)  # [width]
    is_target = (position >= first_targets[:, None]) & (position < lengths[:, None])
    return window, is_target


class TrainingWindows:
    """A SeqData training split as windows (CPU tensors, [W] each): starts, lengths, first_targets, user_ids,
    and n_targets (targets each window trains; they sum to the split's examples), plus the flat table `items`
    [N] they index. `window_len` defaults to 2 * max_seq_len (see the module's docstring)."""

    def __init__(self, data: SeqData, window_len: int | None = None) -> None:
        self.max_seq_len = data.max_seq_len
        self.window_len = 2 * data.max_seq_len if window_len is None else window_len
        self.items = data.items                                        # [N] grouped by user, oldest first
        self.starts, self.lengths, self.first_targets = cut_windows(
            data.target_rows, data.user_ids, data.max_seq_len, self.window_len)
        self.user_ids = data.user_ids[torch.searchsorted(data.target_rows, self.starts + self.first_targets)]  # [W]
        self.n_targets = self.lengths - self.first_targets             # [W]
        self.n_examples = len(data)                                    # the per-example count they replace

    def __len__(self) -> int:
        return len(self.starts)

    def items_batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """index [B] window indices -> gather_windows' (window items [B, window_len], is_target [B, window_len])."""
        return gather_windows(self.items, self.starts[index], self.lengths[index], self.first_targets[index],
                              self.window_len)
