from types import SimpleNamespace

import torch

from evaluation.retrieval import baseline_topk, drop_items


def test_drop_items_keeps_the_order_of_the_rest_and_pads_with_minus_one():
    ranked = torch.tensor([[5, 3, 9, 1, 7], [2, 4, 6, 8, -1]])
    exclude = torch.tensor([[3, 7, -1], [2, 4, 6]])
    assert drop_items(ranked, exclude, 3).tolist() == [[5, 9, 1], [8, -1, -1]]


def test_floors_skip_the_history_when_asked():
    # training examples: 0 -> 1 twice, 0 -> 2 once, 3 -> 1; popularity: 1 (3x), 2 (1x), then ids 0, 3, 4, ...
    train = SimpleNamespace(targets=torch.tensor([1, 1, 2, 1]), last_items=torch.tensor([0, 0, 0, 3]), n_items=6)
    histories = torch.tensor([[4, 0, -1], [1, 2, 0]])  # oldest first, -1 padded; both end on item 0
    data = SimpleNamespace(last_items=torch.tensor([0, 0]), history_batch=lambda index: histories[index])
    def floors(exclude_history):
        return baseline_topk(train, data, 3, torch.arange(2), exclude_history)
    plain = floors(False)
    assert plain["transition"].tolist() == [[1, 2, 0], [1, 2, 0]]
    assert plain["popularity"].tolist() == [[1, 2, 0], [1, 2, 0]]
    skipped = floors(True)
    assert skipped["transition"].tolist() == [[1, 2, 3], [3, 4, 5]]
    assert skipped["popularity"].tolist() == [[1, 2, 3], [3, 4, 5]]
