import pytest
import torch
from torch import nn

from modules.transformer.dropout import PackedDropout, keep_mask, use_packed_dropout
from tests.modules.test_model import tiny_model


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_keeps_each_element_with_the_rounded_probability(p):
    torch.manual_seed(0)
    mask = keep_mask((1000, 1000), p)  # 10**6 elements, 250,000 random words
    assert mask.shape == (1000, 1000) and mask.dtype == torch.bool
    keep = 1 - round(p * 2**16) / 2**16
    sd = (keep * (1 - keep) / mask.numel()) ** 0.5
    assert abs(mask.float().mean().item() - keep) < 5 * sd
    # each of a word's four 16-bit lanes alone, and neighbours uncorrelated (two lanes of one word)
    lanes = mask.flatten().view(-1, 4).float()
    for lane in range(4):
        assert abs(lanes[:, lane].mean().item() - keep) < 5 * 2 * sd
    both = (lanes[:, 0] * lanes[:, 1]).mean().item()
    assert abs(both - keep ** 2) < 5 * 2 * sd


def test_keep_mask_draws_from_the_seeded_global_generator():
    torch.manual_seed(3)
    first = keep_mask((7, 9), 0.3)  # 63 elements: 16 words, the last word's lanes partly unused
    torch.manual_seed(3)
    assert torch.equal(keep_mask((7, 9), 0.3), first)
    assert not torch.equal(keep_mask((7, 9), 0.3), first)  # the stream moved on
    assert keep_mask((0, 4), 0.3).shape == (0, 4)


def test_packed_dropout_scales_survivors_and_keeps_the_mean():
    torch.manual_seed(1)
    x = torch.rand(400, 500) + 1  # no zeros: a zero output is a dropped element
    drop = PackedDropout(0.1).train()
    y = drop(x)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] * (65536 / (65536 - 6554)))
    assert abs(kept.float().mean().item() - (1 - 6554 / 65536)) < 0.003
    assert abs(y.mean().item() / x.mean().item() - 1) < 0.005  # E[output] = input
    # the gradient passes the kept elements with the same scale, nothing through the dropped ones
    x.requires_grad_(True)
    torch.manual_seed(2)
    y = drop(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() * (65536 / (65536 - 6554)))


def test_packed_dropout_is_the_identity_in_eval_and_at_zero():
    x = torch.randn(5, 6)
    assert torch.equal(PackedDropout(0.4).eval()(x), x)
    assert torch.equal(PackedDropout(0.0).train()(x), x)
    with pytest.raises(ValueError, match="must be in"):
        PackedDropout(1.0)


def test_the_model_with_packed_masks_replaces_every_dropout_layer_and_scores_the_same_in_eval():
    torch_masks, packed = tiny_model(), tiny_model(dropout_masks="packed")
    assert sum(type(m) is nn.Dropout for m in torch_masks.modules()) == 9  # 2 a block (feed-forward, residual), the input's
    assert not any(type(m) is nn.Dropout for m in packed.modules())
    assert sum(type(m) is PackedDropout for m in packed.modules()) == 9
    assert "dropout_masks" not in torch_masks.kwargs and packed.kwargs["dropout_masks"] == "packed"
    # the same weights (same seed, no parameters in dropout), so the same scores without dropout
    packed.load_state_dict(torch_masks.state_dict())
    g = torch.Generator().manual_seed(4)
    history, target = torch.randint(0, 5, (3, 6, 4), generator=g), torch.randint(0, 5, (3, 4), generator=g)
    users = torch.tensor([0, 1, 2])
    assert torch.equal(packed.eval()(users, history, target), torch_masks.eval()(users, history, target))
    # in training the masks differ (other random numbers), the loss stays finite and trains
    packed.train()
    loss = packed.loss(packed(users, history, target), target)
    loss.backward()
    assert torch.isfinite(loss) and packed.head.grad is not None
    with pytest.raises(ValueError, match="dropout_masks='bernoulli'"):
        tiny_model(dropout_masks="bernoulli")


def test_use_packed_dropout_counts_what_it_replaced():
    net = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.2), nn.Sequential(nn.Dropout(0.3)))
    assert use_packed_dropout(net) == 2
    assert [m.p for m in net.modules() if isinstance(m, PackedDropout)] == [0.2, 0.3]
    assert use_packed_dropout(net) == 0
