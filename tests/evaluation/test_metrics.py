import math

import pytest
import torch

from evaluation.metrics import TopKMetrics, target_rank
from evaluation.popularity import most_popular


def test_metrics_on_hand_computed_rankings():
    ranked = torch.tensor([
        [7, 3, 5, 1, 2],     # target 7 at rank 0
        [4, 9, 8, 6, 3],     # target 6 at rank 3
        [1, 2, 3, 4, 5],     # target 0 absent
        [5, -1, -1, -1, -1], # target 9 absent, short list padded with -1
    ])
    targets = torch.tensor([7, 6, 0, 9])
    assert target_rank(ranked, targets).tolist() == [0, 3, 5, 5]
    m = TopKMetrics(ks=(1, 3, 5))
    m.update(ranked[:2], targets[:2])  # accumulate over two batches
    m.update(ranked[2:], targets[2:])
    out = m.compute()
    assert out["recall@1"] == pytest.approx(1 / 4)
    assert out["recall@3"] == pytest.approx(1 / 4)
    assert out["recall@5"] == pytest.approx(2 / 4)
    assert out["ndcg@1"] == pytest.approx(1 / 4)
    assert out["ndcg@3"] == pytest.approx(1 / 4)
    assert out["ndcg@5"] == pytest.approx((1 + 1 / math.log2(5)) / 4)


def test_metrics_need_enough_ranked_items():
    with pytest.raises(ValueError, match="at least 10"):
        TopKMetrics((1, 10)).update(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, dtype=torch.long))


def test_most_popular_counts_and_breaks_ties_by_item_id():
    targets = torch.tensor([3, 1, 3, 2, 2, 3, 0, 1])  # counts: 3->3, 1->2, 2->2, 0->1, 4->0
    assert most_popular(targets, n_items=5, k=5).tolist() == [3, 1, 2, 0, 4]
