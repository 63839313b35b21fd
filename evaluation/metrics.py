"""Top-K retrieval metrics with one held-out target per user (leave-one-out).

A hit is the exact target item: all T tokens of its semantic ID, never only the
first levels (which would count a whole collision group as a hit). With a single
relevant item, Recall@K = HR@K, and NDCG@K = 1 / log2(rank + 2) for a 0-based rank < K
(the ideal DCG is 1).
"""
from __future__ import annotations

import torch
from torch import Tensor


def target_rank(ranked_items: Tensor, targets: Tensor) -> Tensor:
    """ranked_items [B, K] item ids best first (-1 = empty slot), targets [B] -> 0-based rank [B], K if absent."""
    hits = ranked_items == targets[:, None]
    K = ranked_items.shape[1]
    return torch.where(hits.any(dim=1), hits.float().argmax(dim=1), K)


class TopKMetrics:
    """Accumulates Recall@k and NDCG@k over batches; `compute()` averages over users."""

    def __init__(self, ks: tuple[int, ...] = (1, 5, 10)) -> None:
        self.ks = tuple(ks)
        self.sums = {f"{m}@{k}": 0.0 for k in self.ks for m in ("recall", "ndcg")}
        self.count = 0

    def update(self, ranked_items: Tensor, targets: Tensor) -> None:
        if ranked_items.shape[1] < max(self.ks):
            raise ValueError(f"need at least {max(self.ks)} ranked items per user, got {ranked_items.shape[1]}")
        rank = target_rank(ranked_items, targets).double().cpu()
        for k in self.ks:
            hit = rank < k
            self.sums[f"recall@{k}"] += hit.sum().item()
            self.sums[f"ndcg@{k}"] += torch.where(hit, 1.0 / torch.log2(rank + 2.0), 0.0).sum().item()
        self.count += len(targets)

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("no users were evaluated")
        return {name: total / self.count for name, total in self.sums.items()}
