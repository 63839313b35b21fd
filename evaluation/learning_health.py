"""Signals that tell whether stage 2 reads the history at all, beyond Recall/NDCG.

- Per-level NLL of the validation targets' codes (teacher forced), next to the NLL of a prior
  that ignores the history: item popularity (add-one) read level by level, p(c_l | c_<l). For
  the first code that prior is the codes' marginal; a first-code NLL stuck at it means the model
  predicts the same coarse cluster whoever the user is. For the later levels the prior is
  nearly the catalogue itself (few items share a prefix), so those NLLs drop early whatever
  the model learns about users.
- coverage@10, the share of the catalogue in anybody's top-10, and the share of users whose
  top-1 is the most common top-1: a model that ignores its input recommends the same few items
  to everyone.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor

from modules.semantic_id_trie import SemanticIdTrie


def prior_nll(sem_ids: Tensor, train_targets: Tensor, eval_targets: Tensor) -> Tensor:
    """sem_ids [n_items, T] the catalogue's IDs; train_targets [M], eval_targets [N] item ids -> [T]:
    mean NLL (nats) of each level of the eval targets' IDs under the history-blind prior
    p(item) ~ (times the item is a training target) + 1, read level by level:
    p(c_l | c_<l) = p(prefix c_<=l) / p(prefix c_<l). Level 0 is the first code's (smoothed)
    marginal; the last levels are nearly fixed by the catalogue once the prefix is known."""
    n_items, T = sem_ids.shape
    weight = torch.bincount(train_targets, minlength=n_items).double() + 1.0  # [n_items]
    prefix_mass = [torch.full((n_items,), weight.sum().item(), dtype=torch.float64)]  # level -1: everything
    for level in range(T):
        _, prefix_id = torch.unique(sem_ids[:, :level + 1], dim=0, return_inverse=True)  # [n_items]
        mass = torch.zeros(int(prefix_id.max()) + 1, dtype=torch.float64).index_add_(0, prefix_id, weight)
        prefix_mass.append(mass[prefix_id])  # [n_items]: the mass of each item's prefix c_<=level
    return torch.stack([(prefix_mass[l][eval_targets] / prefix_mass[l + 1][eval_targets]).log().mean()
                        for l in range(T)])


@torch.no_grad()
def level_nll_sums(model: torch.nn.Module, batches: Iterable[dict[str, Tensor]], trie: SemanticIdTrie) -> tuple[Tensor, int]:
    """Teacher-forced NLL of each target level over `batches` -> (sums [T] float64, number of examples),
    with the model's own softmax (over the valid codes only if it was trained so)."""
    sums = torch.zeros(model.n_levels, dtype=torch.float64, device=next(model.parameters()).device)
    count = 0
    for batch in batches:
        logits = model(batch["user_ids"], batch["history"], batch["target"])  # [B, T, K]
        blocked = (trie.path_blocked(batch["target"], trie.item_ids(batch["history"]))
                   if model.history_bias is not None else None)  # as in training
        nll = model.level_nll(logits, batch["target"], trie.path_masks(batch["target"]), blocked)  # [B, T]
        sums += nll.sum(dim=0).double()
        count += len(nll)
    return sums, count


def coverage_and_top1_share(topk_counts: Tensor, top1_counts: Tensor) -> dict[str, float]:
    """topk_counts, top1_counts [n_items]: how often each item is in a user's top-K / is a user's
    top-1 -> coverage (share of items recommended to anyone) and the most common top-1's share."""
    users = top1_counts.sum().item()
    return {"coverage": (topk_counts > 0).sum().item() / len(topk_counts),
            "top1_share": top1_counts.max().item() / users if users else math.nan}
