import math

import pytest
import torch
import torch.nn.functional as F

from modules.learning_health import coverage_and_top1_share, level_nll_sums, prior_nll
from modules.model import EncoderDecoderRetrievalModel


def test_prior_nll_is_the_marginal_then_the_prefix_conditional():
    train = torch.tensor([[0, 0], [0, 0], [0, 1], [1, 1]])
    valid = torch.tensor([[0, 1], [1, 0]])
    nll = prior_nll(train, valid, codebook_size=2, alpha=1.0)
    p0 = torch.tensor([(3 + 1) / (4 + 2), (1 + 1) / (4 + 2)])  # level 0: add-one marginal
    p1_given_0 = (1 + 1) / (3 + 2)                          # c1 = 1 after c0 = 0: 1 of 3
    p1_given_1 = (0 + 1) / (1 + 2)                          # c1 = 0 after c0 = 1: 0 of 1
    assert nll[0].item() == pytest.approx(-(math.log(p0[0]) + math.log(p0[1])) / 2)
    assert nll[1].item() == pytest.approx(-(math.log(p1_given_0) + math.log(p1_given_1)) / 2)


def test_unseen_prefix_gets_the_uniform_prior():
    nll = prior_nll(torch.tensor([[0, 0]]), torch.tensor([[1, 2]]), codebook_size=4, alpha=1.0)
    assert nll[1].item() == pytest.approx(math.log(4))


def test_level_nll_sums_equal_per_level_cross_entropy():
    torch.manual_seed(0)
    model = EncoderDecoderRetrievalModel(n_levels=3, codebook_size=5, max_history=4, n_user_buckets=3, d_model=8,
                                         n_heads=2, d_head=4, ff_dim=16, n_encoder_layers=1, n_decoder_layers=1).eval()
    batches = [{"user_ids": torch.tensor([0, 1]), "history": torch.randint(0, 5, (2, 4, 3)), "target": torch.randint(0, 5, (2, 3))}
               for _ in range(2)]
    sums, count = level_nll_sums(model, batches)
    assert count == 4
    logits = torch.cat([model(b["user_ids"], b["history"], b["target"]) for b in batches])
    target = torch.cat([b["target"] for b in batches])
    for t in range(3):
        assert sums[t].item() == pytest.approx(F.cross_entropy(logits[:, t], target[:, t], reduction="sum").item(), rel=1e-5)
    assert (sums / count).mean().item() == pytest.approx(model.loss(logits, target).item(), rel=1e-5)


def test_coverage_and_top1_share():
    topk_counts = torch.tensor([3, 0, 1, 0, 2])
    top1_counts = torch.tensor([3, 0, 1, 0, 0])
    assert coverage_and_top1_share(topk_counts, top1_counts) == {"coverage": 3 / 5, "top1_share": 3 / 4}
