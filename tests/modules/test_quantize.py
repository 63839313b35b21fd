
import pytest
import torch

from modules.quantize import FORWARD_MODES, Quantize, rotate_onto


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py



def _nearest(x, codebook):
    return torch.cdist(x, codebook).argmin(-1)


@pytest.mark.parametrize("mode", FORWARD_MODES)
def test_output_shapes_and_eval_picks_nearest_code(mode):
    torch.manual_seed(0)
    q = Quantize(8, 16, forward_mode=mode).eval()
    x = torch.randn(32, 8)
    out = q(x)
    codebook = q.codebook.detach()
    assert out.out.shape == out.codes.shape == (32, 8) and out.ids.shape == (32,)
    assert out.ids.dtype == torch.int64
    assert torch.equal(out.ids, _nearest(x, codebook))
    assert torch.allclose(out.codes, codebook[out.ids]) and torch.allclose(out.out, codebook[out.ids], atol=1e-5)
    # Losses are the squared distance to the chosen code.
    expected = (x - codebook[out.ids]).pow(2).sum(-1).mean()
    assert torch.allclose(out.codebook_loss, expected) and torch.allclose(out.commitment_loss, expected)


@pytest.mark.parametrize("mode", FORWARD_MODES)
def test_gradients_reach_input_and_codebook(mode):
    torch.manual_seed(0)
    q = Quantize(8, 16, forward_mode=mode).train()
    x = torch.randn(64, 8, requires_grad=True)
    out = q(x)
    target = torch.randn(64, 8)
    ((out.out - target).pow(2).sum() + out.codebook_loss + 0.25 * out.commitment_loss).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert q.codebook.grad is not None and q.codebook.grad.abs().sum() > 0


def test_straight_through_copies_the_gradient_onto_the_input():
    torch.manual_seed(0)
    q = Quantize(4, 8, forward_mode="ste").train()
    x = torch.randn(10, 4, requires_grad=True)
    g = torch.randn(10, 4)
    (q(x).out * g).sum().backward()
    assert torch.allclose(x.grad, g)


def test_rotation_trick_value_is_the_code_and_gradient_is_rotated():
    torch.manual_seed(0)
    x = torch.randn(20, 6, requires_grad=True)
    code = torch.randn(20, 6)
    out = rotate_onto(x, code)
    assert torch.allclose(out, code, atol=1e-5)
    g = torch.randn(20, 6)
    (out * g).sum().backward()
    # The gradient is g mapped through (|e|/|x|) R^T with R orthogonal: its norm is scaled by |e|/|x|.
    scale = code.norm(dim=-1) / x.detach().norm(dim=-1)
    assert torch.allclose(x.grad.norm(dim=-1), g.norm(dim=-1) * scale, rtol=1e-4)
    # R rotates x's direction onto e's, so R^T maps e's direction back onto x's.
    u, q_hat = torch.nn.functional.normalize(x.detach(), dim=-1), torch.nn.functional.normalize(code, dim=-1)
    x.grad = None
    (rotate_onto(x, code) * q_hat).sum().backward()
    assert torch.allclose(torch.nn.functional.normalize(x.grad, dim=-1), u, atol=1e-4)


def test_gumbel_samples_follow_softmax_of_negative_distances():
    # Hard Gumbel-softmax draws code k with probability softmax(-||x - e_k||^2)_k.
    torch.manual_seed(0)
    q = Quantize(2, 4, forward_mode="gumbel").train()
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.5], [2.0, 2.0]]))
    x = torch.zeros(20_000, 2)
    freq = torch.bincount(q(x).ids, minlength=4).float() / len(x)
    expected = torch.softmax(-q.codebook.detach().pow(2).sum(-1), 0)
    assert torch.allclose(freq, expected, atol=0.015)


def test_set_codes_sets_the_codes_at_the_index_only():
    torch.manual_seed(0)
    q = Quantize(5, 7)
    before = q.codebook.detach().clone()
    target = torch.randn(3, 5)
    q.set_codes(torch.tensor([0, 2, 6]), target)
    assert torch.equal(q.codebook[[0, 2, 6]].detach(), target)
    assert torch.equal(q.codebook[[1, 3, 4, 5]].detach(), before[[1, 3, 4, 5]])


def test_unknown_forward_mode_is_rejected():
    with pytest.raises(ValueError, match="forward_mode"):
        Quantize(4, 8, forward_mode="vq-ema")
