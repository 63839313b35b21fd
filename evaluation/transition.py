"""Transition baseline: "for the user's last item, recommend the items that most often came next".

A one-line first-order Markov model counted on the training split only: for every (last history
item -> target) pair of the training examples, count; a user is recommended the k items that most
often followed their last history item, ties broken by popularity (count as a training target)
and then by the smaller id; rows with fewer than k seen successors (and unseen last items) are
filled with the most popular items not already in the row. On Beauty it is a strong floor, far
above popularity: every TIGER number is read against it.
"""
from __future__ import annotations

import torch
from torch import Tensor

from evaluation.popularity import most_popular


def transition_table(last: Tensor, target: Tensor, n_items: int, k: int) -> Tensor:
    """last, target [M] item ids of the training examples -> [n_items, k]: row i = the k items
    recommended after item i, best first."""
    popularity = torch.bincount(target, minlength=n_items)  # [n_items]
    pairs, counts = torch.unique(last * n_items + target, return_counts=True)
    prev, nxt = pairs // n_items, pairs % n_items
    # Order: by previous item, then count desc, popularity desc, id asc (stable sorts, last key first).
    order = torch.arange(len(pairs))
    for key in (nxt, -popularity[nxt], -counts, prev):
        order = order[torch.sort(key[order], stable=True).indices]
    prev, nxt = prev[order], nxt[order]
    group_start = torch.searchsorted(prev, prev)  # first index of each pair's previous item
    rank = torch.arange(len(prev)) - group_start
    table = torch.full((n_items, k), -1, dtype=torch.long)
    keep = rank < k
    table[prev[keep], rank[keep]] = nxt[keep]

    # Back-off: the most popular items not already in the row, in order, into the empty slots.
    candidates = most_popular(target, n_items, 2 * k)  # [2k]: a row holds at most k of them
    fresh = ~(table.unsqueeze(2) == candidates.view(1, 1, -1)).any(dim=1)  # [n_items, 2k]
    n_filled = (table >= 0).sum(dim=1, keepdim=True)  # [n_items, 1]: filled slots come first
    slot = n_filled + fresh.long().cumsum(dim=1) - 1  # where each fresh candidate would go
    put = fresh & (slot < k)
    rows = torch.arange(n_items).unsqueeze(1).expand_as(put)
    table[rows[put], slot[put]] = candidates.expand_as(put)[put]
    return table


def transition_topk(train_last: Tensor, train_targets: Tensor, last: Tensor, n_items: int, k: int) -> Tensor:
    """Fit on the training examples (last history item [M], target [M]) and rank after `last` [N] -> [N, k]."""
    return transition_table(train_last, train_targets, n_items, k)[last]


def successor_counts(last: Tensor, target: Tensor, n_items: int, k: int) -> tuple[Tensor, Tensor]:
    """last, target [M] item ids of the training examples -> (items [n_items, k], counts [n_items, k]): row i =
    the (at most) k items that most often followed item i and how often, most frequent first (ties: the
    smaller id); -1 and 0 where item i had fewer successors. The transition baseline's counts, without its
    back-off, for a model or a search that reads them."""
    pairs, counts = torch.unique(last * n_items + target, return_counts=True)  # sorted by (last, target)
    prev, nxt = pairs // n_items, pairs % n_items
    order = torch.argsort(-counts, stable=True)                 # count desc; ties keep the smaller id first
    order = order[torch.argsort(prev[order], stable=True)]      # then grouped by previous item
    prev, nxt, counts = prev[order], nxt[order], counts[order]
    rank = torch.arange(len(prev)) - torch.searchsorted(prev, prev)
    keep = rank < k
    items = torch.full((n_items, k), -1, dtype=torch.long)
    table = torch.zeros((n_items, k), dtype=torch.long)
    items[prev[keep], rank[keep]] = nxt[keep]
    table[prev[keep], rank[keep]] = counts[keep]
    return items, table
