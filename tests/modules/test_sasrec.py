import math

import pytest
import torch

from modules.sasrec import SASRec

N_ITEMS, L = 30, 8


@pytest.fixture
def model(one_thread):
    torch.manual_seed(0)
    return SASRec(N_ITEMS, L, d_model=16, n_blocks=2, n_heads=2, dropout=0.5).eval()


def test_later_items_change_nothing_before_them(model):
    items = torch.randint(N_ITEMS, (3, L), generator=torch.Generator().manual_seed(1))
    out = model(items)
    for t in range(L - 1):
        changed = items.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] + 7) % N_ITEMS  # every later item replaced
        torch.testing.assert_close(model(changed)[:, :t + 1], out[:, :t + 1], rtol=0, atol=0)
        assert not torch.allclose(model(changed)[:, t + 1:], out[:, t + 1:])  # and the later positions do see them


def test_padding_is_ignored_and_each_position_is_its_own_prefix(model):
    items = torch.tensor([[3, 9, 27, 4, 11, -1, -1, -1],
                          [5, 5, 2, -1, -1, -1, -1, -1]])
    out = model(items)
    for row, n in ((0, 5), (1, 3)):
        alone = model(items[row:row + 1, :n])  # the same history without padding, in a batch of its own
        torch.testing.assert_close(out[row, :n], alone[0], rtol=0, atol=1e-6)
        for t in range(n):  # position t of the pass = the last position of the prefix s_0 .. s_t
            prefix = items[row:row + 1, :t + 1]
            torch.testing.assert_close(model.last_hidden(prefix)[0], out[row, t], rtol=0, atol=1e-6)
    torch.testing.assert_close(model.last_hidden(items), out[[0, 1], [4, 2]], rtol=0, atol=0)


def test_causal_in_training_mode_too(model):
    # Same seed, same shape: the same dropout masks, so only the items differ between the two passes.
    model.train()
    items = torch.tensor([[3, 9, 27, 4, 11, 8, -1, -1]])
    changed = items.clone()
    changed[0, 4:6] = torch.tensor([1, 2])
    torch.manual_seed(5)
    out = model(items)
    torch.manual_seed(5)
    out_changed = model(changed)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out_changed[0, :4], out[0, :4], rtol=0, atol=0)
    assert not model.item_emb.weight[N_ITEMS].any()  # the padding row never moves off zero


def test_bce_loss_is_the_papers_formula(model):
    torch.manual_seed(2)
    hidden = torch.randn(4, 16)
    positives, negatives = torch.tensor([1, 7, 7, 29]), torch.tensor([0, 3, 12, 5])
    table = model.item_emb.weight.detach()
    sigmoid = lambda z: 1 / (1 + math.exp(-z))
    expected = sum(-math.log(sigmoid(float(hidden[n] @ table[positives[n]])))
                   - math.log(1 - sigmoid(float(hidden[n] @ table[negatives[n]]))) for n in range(4)) / 4
    assert model.loss(hidden, positives, negatives, "bce").item() == pytest.approx(expected, rel=1e-5)


def test_ce_loss_is_the_full_softmax_over_all_items(model):
    torch.manual_seed(3)
    hidden = torch.randn(3, 16)
    positives = torch.tensor([0, 14, 29])
    table = model.item_emb.weight.detach()[:N_ITEMS]  # the padding row is no candidate
    expected = 0.0
    for n in range(3):
        logits = [float(hidden[n] @ table[i]) for i in range(N_ITEMS)]
        expected += (math.log(sum(math.exp(z) for z in logits)) - logits[positives[n]]) / 3
    assert model.item_logits(hidden).shape == (3, N_ITEMS)
    assert model.loss(hidden, positives, kind="ce").item() == pytest.approx(expected, rel=1e-5)


def test_bad_arguments_are_refused(model):
    with pytest.raises(ValueError, match="negative"):
        model.loss(torch.zeros(2, 16), torch.tensor([0, 1]), None, "bce")
    with pytest.raises(ValueError, match="expected one of"):
        model.loss(torch.zeros(2, 16), torch.tensor([0, 1]), None, "mse")
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, L + 1, dtype=torch.long))
