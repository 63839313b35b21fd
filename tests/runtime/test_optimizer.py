import pytest
import torch

from modules.model import EncoderDecoderRetrievalModel
from runtime.optimizer import build_optimizer, weight_decay_groups


def tiny_model() -> EncoderDecoderRetrievalModel:
    return EncoderDecoderRetrievalModel(n_levels=4, codebook_size=8, max_history=5, n_user_buckets=7, d_model=16,
                                        n_heads=2, d_head=8, ff_dim=32, n_encoder_layers=1, n_decoder_layers=1,
                                        dropout=0.1)


def test_decay_only_on_linear_maps_and_the_head():
    model = tiny_model()
    decay, no_decay = weight_decay_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    exempt = {names[id(p)] for p in no_decay["params"]}
    assert decayed | exempt == set(names.values()) and not decayed & exempt  # every parameter exactly once
    assert "head" in decayed
    assert "encoder.layers.0.attn.to_q.weight" in decayed and "decoder.layers.0.ff.0.weight" in decayed
    for name in ("sem_id_emb.emb.weight", "user_emb.emb.weight", "item_pos_emb.weight", "level_emb.weight",
                 "encoder.layers.0.norm_attn.weight", "encoder.norm.bias", "decoder.layers.0.ff.0.bias"):
        assert name in exempt
    assert not any(n.endswith("bias") or "emb" in n or "norm" in n for n in decayed)


def test_adamw_decays_the_decayed_group_only():
    model = tiny_model()
    opt = build_optimizer(model, "adamw", learning_rate=0.1, weight_decay=0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only weight decay can move a parameter
    opt.step()
    after = dict(model.named_parameters())
    torch.testing.assert_close(after["head"].detach(), before["head"] * (1 - 0.1 * 0.5))
    torch.testing.assert_close(after["sem_id_emb.emb.weight"].detach(), before["sem_id_emb.emb.weight"])


def test_adafactor_lr_is_a_relative_step():
    # One step on a matrix with a constant gradient: Adafactor's update is sign-like with RMS 1
    # (clipped at d = 1), scaled by lr * RMS(parameter): lr 0.01 moves the weights by ~1% of their scale.
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 64, bias=False)
    with torch.no_grad():
        layer.weight.mul_(3.0 / layer.weight.pow(2).mean().sqrt())  # RMS 3
    opt = build_optimizer(layer, "adafactor", learning_rate=0.01, weight_decay=0.0)
    before = layer.weight.detach().clone()
    layer.weight.grad = torch.ones_like(layer.weight)
    opt.step()
    step_rms = (layer.weight.detach() - before).pow(2).mean().sqrt().item()
    assert step_rms == pytest.approx(0.01 * 3.0, rel=1e-3)


def test_unknown_optimizer_names_the_binding():
    with pytest.raises(ValueError, match="train.optimizer='sgd'"):
        build_optimizer(tiny_model(), "sgd", 0.1, 0.0)
