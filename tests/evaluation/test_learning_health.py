import math

import pytest
import torch
import torch.nn.functional as F

from evaluation.learning_health import coverage_and_top1_share, level_nll_sums, prior_nll
from modules.model import EncoderDecoderRetrievalModel
from modules.semantic_id_trie import SemanticIdTrie


def test_prior_nll_reads_item_popularity_level_by_level():
    # 4 items; popularity as training targets 3, 0, 1, 0 -> add-one weights 4, 1, 2, 1 (total 8)
    sem_ids = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])
    train_targets = torch.tensor([0, 0, 0, 2])
    nll = prior_nll(sem_ids, train_targets, eval_targets=torch.tensor([1, 2]))
    # level 0: p(c0=0) = (4+1)/8 for item 1, p(c0=1) = (2+1)/8 for item 2
    assert nll[0].item() == pytest.approx(-(math.log(5 / 8) + math.log(3 / 8)) / 2)
    # level 1: p(c1=1 | c0=0) = 1/5, p(c1=0 | c0=1) = 2/3
    assert nll[1].item() == pytest.approx(-(math.log(1 / 5) + math.log(2 / 3)) / 2)


def test_prior_nll_of_a_level_the_prefix_fixes_is_zero():
    sem_ids = torch.tensor([[0, 5, 0], [1, 7, 0], [2, 7, 0]])  # the last level is constant, the second fixed by the first
    nll = prior_nll(sem_ids, torch.tensor([0, 1]), torch.tensor([0, 1, 2]))
    assert nll[1].item() == pytest.approx(0.0) and nll[2].item() == pytest.approx(0.0)
    assert nll[0].item() > 0


def test_level_nll_sums_equal_per_level_cross_entropy():
    torch.manual_seed(0)
    model = EncoderDecoderRetrievalModel(n_levels=3, codebook_size=5, max_history=4, n_user_buckets=3, d_model=8,
                                         n_heads=2, d_head=4, ff_dim=16, n_encoder_layers=1, n_decoder_layers=1,
                                         dropout=0.1).eval()
    batches = [{"user_ids": torch.tensor([0, 1]), "history": torch.randint(0, 5, (2, 4, 3)), "target": torch.randint(0, 5, (2, 3))}
               for _ in range(2)]
    catalogue = torch.cartesian_prod(*[torch.arange(5)] * 3)  # every ID exists: the masks allow every code
    sums, count = level_nll_sums(model, batches, SemanticIdTrie(catalogue, 5))
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


def test_constrained_level_nll_renormalises_over_the_valid_codes():
    torch.manual_seed(0)
    kwargs = dict(n_levels=2, codebook_size=3, max_history=2, n_user_buckets=2, d_model=8, n_heads=1, d_head=8,
                  ff_dim=8, n_encoder_layers=1, n_decoder_layers=1, dropout=0.1)
    model = EncoderDecoderRetrievalModel(**kwargs, constrained_softmax=True)
    catalogue = torch.tensor([[0, 1], [0, 2], [2, 0]])  # first codes {0, 2}; after 0: {1, 2}
    logits = torch.randn(1, 2, 3)
    target = catalogue[:1]
    nll = model.level_nll(logits, target, SemanticIdTrie(catalogue, 3).path_masks(target))
    p0 = logits[0, 0, [0, 2]].softmax(0)[0]
    p1 = logits[0, 1, [1, 2]].softmax(0)[0]
    torch.testing.assert_close(nll[0], torch.stack([-p0.log(), -p1.log()]))
    with pytest.raises(ValueError, match="path_masks"):
        model.level_nll(logits, target)
