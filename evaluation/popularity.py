"""Popularity baseline: recommend every user the items most often seen as training
targets. Every metric is reported next to it, so each number has a floor beside it."""
from __future__ import annotations

import torch
from torch import Tensor


def most_popular(train_targets: Tensor, n_items: int, k: int) -> Tensor:
    """train_targets [M] item ids -> the k most frequent item ids [k], ties broken by the smaller id."""
    counts = torch.bincount(train_targets, minlength=n_items)
    # Stable sort on -count keeps ascending item id among equal counts: deterministic.
    return torch.sort(-counts, stable=True).indices[:k]
