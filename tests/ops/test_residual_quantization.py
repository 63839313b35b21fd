"""The fused residual-quantization kernel against the PyTorch reference.

Without a GPU the kernel runs on CPU tensors in Triton's interpreter (tests/conftest.py
sets TRITON_INTERPRET=1); on a GPU the same tests run the compiled kernel on CUDA tensors,
and TestCuda adds what only a GPU can check.
"""
import copy
import json
import math

import pytest
import torch

import ops.triton.residual_quantization as rq_triton
from ops.contract import KERNEL_MAX_DIM
from ops.residual_quantization import (
    FORCE_REFERENCE_ENV,
    reference_forced,
    residual_quantize,
    residual_quantize_reference,
    uses_kernel,
)
from ops.triton.residual_quantization import triton_residual_quantize

if rq_triton.INTERPRETED:
    KERNEL_DEVICE = "cpu"
elif torch.cuda.is_available():
    KERNEL_DEVICE = "cuda"
else:
    pytest.skip("no GPU and TRITON_INTERPRET is not 1: the kernel cannot run here", allow_module_level=True)

needs_compiled_cuda = pytest.mark.skipif(
    not torch.cuda.is_available() or rq_triton.INTERPRETED,
    reason="needs a CUDA GPU with the compiled (not interpreted) Triton kernel; run gpu/gpu_check.sh on a GPU machine",
)


def make_inputs(B, D, K, L, dtype=torch.float32, cb_dtype=None, seed=0, device=KERNEL_DEVICE):
    """Latents near sums of codes, so every level has a clear but non-trivial nearest code."""
    g = torch.Generator().manual_seed(seed)
    # Codebooks shrink per level like a trained RQ-VAE's, so later levels quantize a smaller residual.
    codebooks = torch.randn(L, K, D, generator=g) * (0.5 ** torch.arange(L)).view(L, 1, 1)
    z = torch.randn(B, D, generator=g)
    return z.to(device, dtype), codebooks.to(device, cb_dtype or dtype)


def sq_dist64(residual, codes):
    """||r - e||^2 in fp64, per row: [B, D], [B, D] -> [B]."""
    return (residual.double() - codes.double()).pow(2).sum(-1)


def assert_matches_reference(z, codebooks, max_tie_fraction=0.02):
    """ids equal except at ties, codes/residuals allclose, and every kernel pick truly nearest.

    Where the ids differ at a level the two distances must be equal (a tie, up to fp32
    rounding); such a row then quantizes a different residual, so later levels are
    compared on rows that never diverged.
    """
    ids, codes = triton_residual_quantize(z, codebooks)
    ref_ids, ref_codes = residual_quantize_reference(z, codebooks)
    B, L, D = codes.shape
    assert ids.shape == (B, L) and ids.dtype == torch.int64
    assert codes.dtype == codebooks.dtype and codes.device == z.device
    cb = codebooks.detach()
    # The kernel's codes are exactly the codebook rows its ids name.
    for level in range(L):
        assert torch.equal(codes[:, level], cb[level, ids[:, level]])

    scale = max(1.0, z.detach().float().pow(2).sum(-1).max().item())
    tol = 1e-5 * scale
    residual = z.detach().double()  # the kernel's own running residual
    agree = torch.ones(B, dtype=torch.bool, device=z.device)
    for level in range(L):
        e = cb[level].double()  # [K, D]
        all_dists = residual.pow(2).sum(-1, keepdim=True) - 2 * residual @ e.T + e.pow(2).sum(-1)  # [B, K] fp64
        picked = all_dists.gather(1, ids[:, level : level + 1]).squeeze(1)
        # The kernel's pick is the nearest code of its residual (an oracle independent of the reference).
        assert (picked - all_dists.min(1).values).abs().max().item() <= tol
        differ = agree & (ids[:, level] != ref_ids[:, level])
        if differ.any():
            ref_dist = sq_dist64(residual[differ], cb[level, ref_ids[differ, level]])
            assert (picked[differ] - ref_dist).abs().max().item() <= tol, "ids differ where distances differ"
        agree &= ~differ
        residual = residual - codes[:, level].double()
    assert (~agree).float().mean().item() <= max_tie_fraction, "too many ties to be a fair comparison"
    torch.testing.assert_close(codes[agree], ref_codes[agree], rtol=0, atol=0)
    # Final residuals z - sum_l codes agree with the reference's on the same rows.
    ref_residual = z.detach().float() - ref_codes.float().sum(1)
    torch.testing.assert_close(residual.float()[agree], ref_residual[agree], rtol=1e-5, atol=1e-5)
    return ids, codes


# Odd sizes everywhere: B not a multiple of the row block, D/K/L not powers of two, one and many K-tiles.
SHAPES = [
    (1, 1, 1, 1),
    (37, 19, 45, 3),
    (70, 33, 100, 5),
    (33, 128, 17, 2),
    (5, 7, 1024, 1),
    (9, 128, 300, 8),
    (64, 32, 256, 3),  # TIGER's RQ-VAE: 3 levels of 256 codes on a 32-d latent
]


def random_shapes(n, seed=123):
    g = torch.Generator().manual_seed(seed)
    draw = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g))  # noqa: E731
    return [(draw(1, 80), draw(1, 128), draw(1, 300), draw(1, 8)) for _ in range(n)]


@pytest.mark.parametrize("B,D,K,L", SHAPES + random_shapes(4))
def test_fp32_matches_reference(B, D, K, L):
    assert_matches_reference(*make_inputs(B, D, K, L, seed=B * 7 + K))


@pytest.mark.parametrize("B,D,K,L", [(37, 19, 45, 3), (50, 64, 130, 4)])
def test_bf16_matches_reference(B, D, K, L):
    z, codebooks = make_inputs(B, D, K, L, dtype=torch.bfloat16, seed=1)
    ids, codes = assert_matches_reference(z, codebooks)
    assert codes.dtype == torch.bfloat16


def test_mixed_dtypes_codes_in_codebook_dtype():
    z, codebooks = make_inputs(40, 24, 60, 3, dtype=torch.bfloat16, cb_dtype=torch.float32, seed=2)
    _, codes = assert_matches_reference(z, codebooks)
    assert codes.dtype == torch.float32


def test_planted_codes_are_recovered():
    """z built as a sum of one code per level (plus small noise) must quantize back to exactly those codes."""
    B, D, K, L = 45, 20, 70, 4
    g = torch.Generator().manual_seed(3)
    # Well-separated levels: level l's codes have norm ~ 8^-l, so each level's pick is unambiguous.
    codebooks = torch.nn.functional.normalize(torch.randn(L, K, D, generator=g), dim=-1)
    codebooks = codebooks * (8.0 ** -torch.arange(L)).view(L, 1, 1)
    planted = torch.randint(0, K, (B, L), generator=g)
    z = codebooks[torch.arange(L), planted].sum(1) + 1e-4 * torch.randn(B, D, generator=g)
    ids, codes = triton_residual_quantize(z.to(KERNEL_DEVICE), codebooks.to(KERNEL_DEVICE))
    assert torch.equal(ids.cpu(), planted)


def test_exact_ties_pick_the_lowest_id():
    """Duplicated codes (including across K-tiles) tie exactly; like torch.argmin, the first wins."""
    B, D, K, L = 40, 12, 90, 2
    z, codebooks = make_inputs(B, D, K, L, seed=4, device="cpu")
    codebooks[:, 70:] = codebooks[:, 5:25]  # codes 70..89 duplicate 5..24, in a later tile
    codebooks[1] = 0.0  # a level of identical codes: every row ties across all K
    ids, _ = triton_residual_quantize(z.to(KERNEL_DEVICE), codebooks.to(KERNEL_DEVICE))
    ref_ids, _ = residual_quantize_reference(z, codebooks)
    assert torch.equal(ids.cpu(), ref_ids)
    assert (ids[:, 0] < 70).all() and (ids[:, 1] == 0).all()


def test_nearest_code_with_one_level():
    """L = 1 is a nearest-code search (the tokenizer's k-means assignment): argmin of cdist."""
    z, codebooks = make_inputs(77, 31, 200, 1, seed=5)
    ids, codes = triton_residual_quantize(z, codebooks)
    expected = torch.cdist(z.cpu().double(), codebooks[0].cpu().double()).argmin(1)
    assert torch.equal(ids[:, 0].cpu(), expected)
    # The dispatcher serves the same call (reference on CPU, kernel on CUDA).
    dispatched_ids, _ = residual_quantize(z, codebooks)
    assert torch.equal(dispatched_ids[:, 0].cpu(), expected)


def test_empty_batch():
    z, codebooks = make_inputs(0, 16, 20, 3)
    ids, codes = triton_residual_quantize(z, codebooks)
    assert ids.shape == (0, 3) and codes.shape == (0, 3, 16)


def test_non_contiguous_inputs():
    z, codebooks = make_inputs(30, 20, 50, 2)
    z_t = z.t().contiguous().t()  # same values, column-major
    cb_t = codebooks.transpose(1, 2).contiguous().transpose(1, 2)
    assert not z_t.is_contiguous() and not cb_t.is_contiguous()
    ids, codes = triton_residual_quantize(z_t, cb_t)
    ref_ids, ref_codes = triton_residual_quantize(z, codebooks)
    assert torch.equal(ids, ref_ids) and torch.equal(codes, ref_codes)


def test_bad_inputs_raise():
    z, codebooks = make_inputs(4, 8, 10, 2)
    with pytest.raises(ValueError, match=r"z \[B, D\]"):
        triton_residual_quantize(z, codebooks[..., :7])
    with pytest.raises(ValueError, match=r"D must be <= 128"):
        triton_residual_quantize(*make_inputs(4, KERNEL_MAX_DIM + 1, 10, 2))
    with pytest.raises(TypeError, match="fp32, bf16 or fp16"):
        triton_residual_quantize(z.double(), codebooks.double())


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_codebook_gradient_equals_reference(dtype):
    """Many rows pick the same code (K small), so the backward must sum their gradients."""
    z, codebooks = make_inputs(67, 21, 9, 3, dtype=dtype, seed=6)
    grad_out = torch.randn(67, 3, 21, generator=torch.Generator().manual_seed(7)).to(z.device, dtype)
    grads = []
    for fn in (triton_residual_quantize, residual_quantize_reference):
        cb = codebooks.clone().requires_grad_(True)
        z_in = z.clone().requires_grad_(True)
        ids, codes = fn(z_in, cb)
        assert not ids.requires_grad and codes.requires_grad
        z_grad, cb_grad = torch.autograd.grad(codes, (z_in, cb), grad_out, allow_unused=True)
        assert z_grad is None  # the argmin passes no gradient to z, in both
        assert cb_grad.dtype == dtype
        grads.append((ids, cb_grad))
    (ids, grad), (ref_ids, ref_grad) = grads
    assert torch.equal(ids, ref_ids)
    # Same sums in another order (CUDA atomics); the reference sums bf16 in bf16, the kernel's backward in fp32.
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=2e-2, atol=5e-2)
    torch.testing.assert_close(grad.float(), ref_grad.float(), **tol)
    # And the gradient is the scatter-add it should be: sum of grad_out over rows that chose each code.
    expected = torch.zeros(3, 9, 21, dtype=torch.float64)
    for level in range(3):
        expected[level].index_add_(0, ids[:, level].cpu(), grad_out[:, level].cpu().double())
    torch.testing.assert_close(grad.cpu().double(), expected, rtol=1e-2 if dtype == torch.bfloat16 else 1e-6, atol=1e-5)


def rqvae_ste_step(quantize, encoder, decoder, codebooks, x, beta=0.25):
    """A tiny RQ-VAE loss (Lee et al. 2022; TIGER Sec. 3.1): reconstruction through the
    straight-through estimator, codebook loss on sg(r_l), commitment on sg(e_l)."""
    z = encoder(x)  # [B, D]
    ids, codes = quantize(z, codebooks)  # [B, L], [B, L, D]
    z_hat = codes.sum(1)
    z_q = z + (z_hat - z).detach()  # STE: forward is z_hat, gradient goes to z
    residuals = z[:, None, :] - torch.cumsum(codes, 1) + codes  # r_l = z - sum_{j<l} e_j  [B, L, D]
    codebook_loss = (residuals.detach() - codes).pow(2).sum(-1).mean()
    commitment = (residuals - codes.detach()).pow(2).sum(-1).mean()
    loss = (decoder(z_q) - x).pow(2).sum(-1).mean() + codebook_loss + beta * commitment
    loss.backward()
    return ids, loss.detach()


def test_ste_training_gradients_equal_reference():
    torch.manual_seed(8)
    x = torch.randn(50, 12).to(KERNEL_DEVICE)
    encoder, decoder = torch.nn.Linear(12, 10), torch.nn.Linear(10, 12)
    codebooks = torch.nn.Parameter(torch.randn(3, 17, 10) * 0.5)
    results = []
    for quantize in (triton_residual_quantize, residual_quantize_reference):
        enc, dec = [torch.nn.Linear(m.in_features, m.out_features) for m in (encoder, decoder)]
        enc.load_state_dict(encoder.state_dict())
        dec.load_state_dict(decoder.state_dict())
        enc, dec = enc.to(KERNEL_DEVICE), dec.to(KERNEL_DEVICE)
        cb = torch.nn.Parameter(codebooks.detach().clone().to(KERNEL_DEVICE))
        ids, loss = rqvae_ste_step(quantize, enc, dec, cb, x)
        results.append((ids, loss, [p.grad for p in (*enc.parameters(), *dec.parameters(), cb)]))
    (ids, loss, grads), (ref_ids, ref_loss, ref_grads) = results
    assert torch.equal(ids, ref_ids)
    torch.testing.assert_close(loss, ref_loss)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    for g, ref_g in zip(grads, ref_grads):
        torch.testing.assert_close(g, ref_g, rtol=1e-5, atol=1e-6)


def test_ste_training_follows_reference_and_reduces_loss():
    """Adam steps through the fused op lower the RQ-VAE loss, step for step like the reference."""
    torch.manual_seed(9)
    centers = torch.randn(6, 12) * 0.5
    x = (centers[torch.randint(0, 6, (32,))] + 0.05 * torch.randn(32, 12)).to(KERNEL_DEVICE)
    init = [torch.nn.Linear(12, 8), torch.nn.Linear(8, 12), torch.randn(2, 8, 8) * 0.5]
    trajectories = []
    for quantize in (triton_residual_quantize, residual_quantize_reference):
        enc, dec = [copy.deepcopy(m).to(KERNEL_DEVICE) for m in init[:2]]
        cb = torch.nn.Parameter(init[2].clone().to(KERNEL_DEVICE))
        opt = torch.optim.Adam([*enc.parameters(), *dec.parameters(), cb], lr=1e-2)
        losses = []
        for _ in range(15):
            opt.zero_grad()
            _, loss = rqvae_ste_step(quantize, enc, dec, cb, x)
            opt.step()
            losses.append(loss.item())
        trajectories.append(losses)
    losses, ref_losses = trajectories
    assert losses[-1] < 0.8 * losses[0]
    torch.testing.assert_close(losses, ref_losses, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- dispatch


def test_reference_switch(monkeypatch):
    monkeypatch.delenv(FORCE_REFERENCE_ENV, raising=False)
    assert not reference_forced() and reference_forced(force_reference=True)
    monkeypatch.setenv(FORCE_REFERENCE_ENV, "0")
    assert not reference_forced()
    monkeypatch.setenv(FORCE_REFERENCE_ENV, "1")
    assert reference_forced()


def test_cpu_tensors_use_the_reference(monkeypatch):
    """CPU tensors never reach the kernel, even with the interpreter on: the reference is the CPU path."""

    def fail(*args, **kwargs):
        raise AssertionError("the kernel was called for CPU tensors")

    monkeypatch.setattr(rq_triton, "triton_residual_quantize", fail)
    z, codebooks = make_inputs(20, 10, 30, 2, device="cpu")
    assert not uses_kernel(z, codebooks)
    ids, codes = residual_quantize(z, codebooks)
    ref_ids, ref_codes = residual_quantize_reference(z, codebooks)
    assert torch.equal(ids, ref_ids) and torch.equal(codes, ref_codes)


# ----------------------------------------------------------------------------- benchmark


def test_bench_runs_and_reports_consistent_numbers(tmp_path, capsys):
    from ops import bench

    out = tmp_path / "bench.json"
    bench.main(["--sizes", "40", "--dtypes", "fp32,bf16", "--dim", "16", "--codebook-size", "40", "--levels", "2",
                "--no-compile", "--warmup", "1", "--reps", "2", "--copy-mib", "8", "--json", str(out)])
    report = json.loads(out.read_text())
    table = capsys.readouterr().out
    assert report["copy_gbps"] > 0 and "| fused |" in table and "| eager |" in table
    rows = report["rows"]
    assert {(r["dtype"], r["mode"], r["pass"]) for r in rows} >= {
        (d, m, p) for d in ("fp32", "bf16") for m in ("fused", "eager") for p in ("fwd", "fwd+bwd")
    }
    for r in rows:
        assert r["ms"] > 0 and math.isclose(r["gbps"], r["bytes"] / r["ms"] / 1e6, rel_tol=1e-6)
        assert math.isclose(r["pct_copy"], 100 * r["gbps"] / report["copy_gbps"], rel_tol=1e-6)
        if r["mode"] == "fused":
            assert r["ids_agree"] >= 0.98  # checked against the reference before timing


# ----------------------------------------------------------------------------- CUDA only


@needs_compiled_cuda
class TestCuda:
    def test_dispatch_routes_cuda_to_kernel(self, monkeypatch):
        monkeypatch.delenv(FORCE_REFERENCE_ENV, raising=False)
        z, codebooks = make_inputs(100, 32, 256, 3, device="cuda")
        calls = []
        real = rq_triton.triton_residual_quantize
        monkeypatch.setattr(rq_triton, "triton_residual_quantize", lambda *a: calls.append(1) or real(*a))
        assert uses_kernel(z, codebooks)
        residual_quantize(z, codebooks)
        assert calls == [1]
        assert not uses_kernel(z, codebooks, force_reference=True)
        assert not uses_kernel(z.double(), codebooks.double())
        assert not uses_kernel(*make_inputs(4, KERNEL_MAX_DIM + 1, 8, 2, device="cuda"))
        monkeypatch.setenv(FORCE_REFERENCE_ENV, "1")
        assert not uses_kernel(z, codebooks)
        residual_quantize(z, codebooks)
        assert calls == [1]

    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
    def test_large_batch_matches_reference(self, dtype):
        # Enough rows for every autotune config's row block to leave a ragged last block.
        z, codebooks = make_inputs(200_003, 32, 256, 3, dtype=dtype, device="cuda", seed=10)
        assert_matches_reference(z, codebooks, max_tie_fraction=1e-3)

    def test_widest_shapes(self):
        assert_matches_reference(*make_inputs(4099, 128, 1024, 8, device="cuda", seed=11))

    def test_kernel_faster_than_eager(self):
        """A sanity floor well under the benchmark's target: fused forward beats eager at B = 1M."""
        import triton.testing

        z, codebooks = make_inputs(1 << 20, 32, 256, 3, device="cuda", seed=12)
        fused = triton.testing.do_bench(lambda: rq_triton.residual_quantize_forward(z, codebooks))
        eager = triton.testing.do_bench(lambda: residual_quantize_reference(z, codebooks))
        assert fused < eager / 2, f"fused {fused:.3f} ms vs eager {eager:.3f} ms"
