import pytest
import torch

import train_rqvae
from modules.quantize import FORWARD_MODES, Quantize
from modules.rqvae import RqVae
from runtime.gin_cli import train_defaults


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

VARIANTS = [dict(forward_mode=m) for m in FORWARD_MODES]


def _model(**kwargs):
    torch.manual_seed(0)
    sizes = dict(hidden_dims=(16, 12), latent_dim=6, codebook_size=8, n_layers=3, commitment_weight=0.25,
                 forward_mode="ste")
    return RqVae(input_dim=24, **{**sizes, **kwargs})


def test_train_rqvae_defaults_build_the_paper_layout():
    defaults = train_defaults(train_rqvae.train)  # the one place the paper's values are written (TIGER Sec. 4.1)
    model = RqVae(input_dim=768, **{name: defaults[name] for name in (
        "hidden_dims", "latent_dim", "codebook_size", "n_layers", "commitment_weight", "forward_mode")})
    assert model.commitment_weight == 0.25
    widths = [m.out_features for m in model.encoder if isinstance(m, torch.nn.Linear)]
    assert widths == [512, 256, 128, 32]
    assert [m.out_features for m in model.decoder if isinstance(m, torch.nn.Linear)] == [128, 256, 512, 768]
    assert sum(isinstance(m, torch.nn.ReLU) for m in model.encoder) == 3
    assert len(model.levels) == 3 and all(q.codebook.shape == (256, 32) for q in model.levels)


@pytest.mark.parametrize("kwargs", VARIANTS, ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_shapes_and_gradients_reach_encoder_and_every_codebook(kwargs):
    model = _model(**kwargs).train()
    x = torch.randn(40, 24)
    model.init_codebooks(x)
    out = model(x)
    assert out.ids.shape == (40, 3) and out.residuals.shape == (40, 3, 6) and out.reconstruction.shape == (40, 24)
    assert int(out.ids.max()) < 8
    out.loss.backward()
    for p in model.encoder.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    for level in model.levels:
        assert level.codebook.grad is not None and level.codebook.grad.abs().sum() > 0


def test_loss_is_reconstruction_plus_codebook_plus_beta_commitment():
    model = _model(commitment_weight=0.25).eval()
    x = torch.randn(30, 24)
    out = model(x)
    z = model.encoder(x)
    residual, z_q, quant = z, torch.zeros_like(z), 0.0
    for level in model.levels:
        code = level.codebook[torch.cdist(residual, level.codebook).argmin(-1)]
        err = (residual - code).pow(2).sum(-1).mean()
        quant = quant + err + 0.25 * err
        z_q, residual = z_q + code, residual - code
    recon = (model.decoder(z_q) - x).pow(2).sum(-1).mean()
    assert torch.allclose(out.quantization_loss, quant, rtol=1e-5)
    assert torch.allclose(out.reconstruction_loss, recon, rtol=1e-5)
    assert torch.allclose(out.loss, recon + quant, rtol=1e-5)


def test_fused_ste_path_matches_per_level_loop(monkeypatch):
    x = torch.randn(50, 24)
    results = []
    for force_loop in (False, True):
        model = _model().train()
        model.init_codebooks(x)
        if force_loop:
            monkeypatch.setattr(Quantize, "is_plain", property(lambda self: False))
        out = model(x)
        out.loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        results.append((out, grads))
    (a, grads_a), (b, grads_b) = results
    assert torch.equal(a.ids, b.ids)
    for name in ("loss", "reconstruction_loss", "quantization_loss", "residuals", "reconstruction"):
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-6), name
    for ga, gb in zip(grads_a, grads_b):
        assert torch.allclose(ga, gb, atol=1e-5)


def test_kmeans_init_uses_every_code_and_beats_random_codebooks():
    model = _model()
    x = torch.randn(200, 24)
    before = model.eval()(x).quantization_loss
    assert not bool(model.codebooks_initialized)
    model.init_codebooks(x)
    after = model(x)
    assert bool(model.codebooks_initialized)
    assert after.quantization_loss < 0.5 * before
    # Each level's codes are k-means centroids of that level's residuals: all of them are picked.
    for level in range(3):
        assert len(torch.unique(after.ids[:, level])) == 8
    # The flag travels with the weights, so a resumed run does not re-initialise.
    fresh = _model()
    fresh.load_state_dict(model.state_dict())
    assert bool(fresh.codebooks_initialized)


def test_semantic_ids_are_nearest_codes_in_every_mode():
    x = torch.randn(30, 24)
    for kwargs in VARIANTS:
        model = _model(**kwargs).train()
        model.init_codebooks(x)
        ids = model.semantic_ids(x)
        assert torch.equal(ids, model.eval()(x).ids)
        model.train()  # no Gumbel sampling or other training-mode behaviour in semantic_ids
        assert torch.equal(model.semantic_ids(x), ids)


def test_tiny_model_overfits_a_small_batch():
    torch.manual_seed(0)
    model = _model()
    x = torch.randn(32, 4) @ torch.randn(4, 24)  # rank 4: fits through the 6-d latent
    model.init_codebooks(x)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        out = model(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = first if first is not None else out.reconstruction_loss.item()
    assert out.reconstruction_loss.item() < 0.3 * first


# ---- the decoder input's gradient to the encoder output (issue 35, item 2)

def _jacobian_per_row(model, z):
    """d z_q / d z of RqVae.quantize for every row of z [B, D] -> [B, D, D] (rows never mix)."""
    jacobian = torch.autograd.functional.jacobian(lambda z: model.quantize(z)[0], z)  # [B, D, B, D]
    return torch.einsum("bibj->bij", jacobian)


@pytest.mark.parametrize("force_loop", [False, True], ids=["fused", "loop"])
def test_straight_through_is_the_identity_over_all_levels(force_loop, monkeypatch):
    # RQ-VAE (Lee et al. 2022): z_q = z + sg[sum_l e_l - z], so d z_q / d z = I, not L * I.
    if force_loop:  # the per-level path the other forward modes take
        monkeypatch.setattr(Quantize, "is_plain", property(lambda self: False))
    model = _model(forward_mode="ste").train()
    x = torch.randn(40, 24)
    model.init_codebooks(x)
    z = model.encoder(x[:8]).detach()
    assert torch.allclose(_jacobian_per_row(model, z), torch.eye(6).expand(8, 6, 6), atol=1e-6)
    # The value is still the sum of the chosen codes.
    z_q, ids, _, _ = model.quantize(z)
    codes = sum(level.codebook[ids[:, l]] for l, level in enumerate(model.levels))
    assert torch.allclose(z_q, codes, atol=1e-6)


def test_straight_through_identity_also_by_backward_of_a_random_cotangent(monkeypatch):
    x = torch.randn(40, 24)
    for force_loop in (False, True):
        model = _model().train()
        model.init_codebooks(x)
        if force_loop:
            monkeypatch.setattr(Quantize, "is_plain", property(lambda self: False))
        z = model.encoder(x).detach().requires_grad_()
        g = torch.randn_like(z)
        (model.quantize(z)[0] * g).sum().backward()
        assert torch.allclose(z.grad, g, atol=1e-6), f"force_loop={force_loop}"


def test_rotation_trick_rotates_the_encoder_output_onto_the_sum_of_codes_once():
    # One rotation z -> z_q with scale |z_q|/|z| (Fifty et al. 2024 applied to the whole RQ output):
    # J = s R with R orthogonal and J z = z_q; per-level rotations summed would give neither.
    model = _model(forward_mode="rotation").train()
    x = torch.randn(40, 24)
    model.init_codebooks(x)
    z = model.encoder(x[:8]).detach()
    jac = _jacobian_per_row(model, z)  # [B, D, D]
    z_q = model.quantize(z)[0].detach()
    scale = z_q.norm(dim=-1) / z.norm(dim=-1)  # [B]
    gram = jac @ jac.transpose(1, 2)
    assert torch.allclose(gram, scale[:, None, None] ** 2 * torch.eye(6), atol=1e-4)
    assert torch.allclose(torch.einsum("bij,bj->bi", jac, z), z_q, atol=1e-4)


@pytest.mark.parametrize("force_loop", [False, True], ids=["fused", "loop"])
def test_codebook_and_commitment_gradients_are_the_papers(force_loop, monkeypatch):
    # TIGER Sec. 3.1, per level l with r_l = z - sum_{j<l} sg[e_j], averaged over the batch:
    #   d/dz    beta ||r_l - sg[e_l]||^2  = 2 beta (r_l - e_l) / B   (every level reaches z)
    #   d/de_k  ||sg[r_l] - e_k||^2       = 2 sum_{b: c_lb = k} (e_k - r_lb) / B
    model = _model(forward_mode="ste", commitment_weight=0.25).train()
    x = torch.randn(40, 24)
    model.init_codebooks(x)
    if force_loop:
        monkeypatch.setattr(Quantize, "is_plain", property(lambda self: False))
    z = model.encoder(x).detach().requires_grad_()
    _, ids, residuals, loss = model.quantize(z)
    codebooks = [level.codebook for level in model.levels]
    grads = torch.autograd.grad(loss, [z, *codebooks])
    B = len(z)
    expected_z = sum(2 * 0.25 * (residuals[:, l] - codebooks[l].detach()[ids[:, l]]) / B for l in range(3))
    assert torch.allclose(grads[0], expected_z, atol=1e-6)
    for l in range(3):
        diff = codebooks[l].detach()[ids[:, l]] - residuals[:, l]  # [B, D]
        expected = torch.zeros_like(codebooks[l]).index_add_(0, ids[:, l], 2 * diff / B)
        assert torch.allclose(grads[1 + l], expected, atol=1e-6), l
