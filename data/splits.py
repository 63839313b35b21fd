"""Leave-one-out splits (TIGER Sec. 4.1, following SASRec/S3-Rec): per user the
last item is the test target, the second-to-last the validation target, and every
earlier item except the first is a training target, each predicted from the items
before it (the most recent `max_seq_len` of them).

Everything works on the flat interaction table (rows grouped by user, oldest
first): a target is a row index, its history the `history_length` rows just before it.
"""
from __future__ import annotations

import numpy as np
import torch

SUBSETS = ("train", "valid", "test")


def leave_one_out(users: np.ndarray, max_seq_len: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """users: int [N], grouped and ascending. Returns {subset: (target_rows [M], history_lengths [M])}."""
    if max_seq_len < 1:
        raise ValueError(f"max_seq_len={max_seq_len}: must be >= 1")
    users = np.asarray(users)
    if len(users) and np.any(np.diff(users) < 0):
        raise ValueError("interactions must be grouped by user in ascending order")
    _, first_row, counts = np.unique(users, return_index=True, return_counts=True)
    if np.any(counts < 3):
        raise ValueError(f"{int((counts < 3).sum())} users have fewer than 3 interactions: "
                         "leave-one-out needs a training, a validation and a test item")
    rows = np.arange(len(users))
    user_index = np.repeat(np.arange(len(counts)), counts)  # [N] 0..n_users-1 by group
    position = rows - first_row[user_index]  # [N] 0 = oldest item of the user
    length = counts[user_index]  # [N]

    masks = {
        "train": (position >= 1) & (position <= length - 3),
        "valid": position == length - 2,
        "test": position == length - 1,
    }
    return {name: (rows[m], np.minimum(position[m], max_seq_len)) for name, m in masks.items()}


def gather_histories(items: torch.Tensor, target_rows: torch.Tensor, history_lengths: torch.Tensor,
                     max_seq_len: int) -> torch.Tensor:
    """items: [N]; target_rows, history_lengths: [M] -> [M, max_seq_len] item ids,
    oldest first, right-padded with -1. On the device of `items` (the CPU, or a resident store's GPU)."""
    offsets = torch.arange(max_seq_len, device=items.device)  # [L]
    start = (target_rows - history_lengths).unsqueeze(1)  # [M, 1]
    index = start + offsets  # [M, L]
    valid = offsets < history_lengths.unsqueeze(1)  # [M, L]
    return torch.where(valid, items[index.clamp(max=len(items) - 1)], -1)
