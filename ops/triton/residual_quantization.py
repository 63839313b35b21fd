"""Fused residual quantization: one Triton launch for all levels.

Eager PyTorch runs each level as separate kernels (distances, argmin, gather,
subtract) and writes the full [B, K] distance matrix to memory every time. Here
each program loads BLOCK_B latent rows once, keeps their residual in registers
and, level by level, streams the codebook through in K-tiles with a running
argmin, so only the ids [B, L] and the chosen codes [B, L, D] are written.

    z          [B, D]     fp32 or bf16 latents
    codebooks  [L, K, D]  fp32 or bf16
 -> ids        [B, L]     int64
    codes      [B, L, D]  codebooks' dtype

Same contract as `ops.residual_quantization.residual_quantize_reference`, which is
the oracle: distances are ||e||^2 - 2 r.e in fp32 (||r||^2 is constant per row),
ties go to the lowest code id, the residual is kept in fp32. `codes` carries a
gradient to the codebooks (the gather), z gets none (the argmin), so the
straight-through estimator of the RQ-VAE trains through this op.

Set TRITON_INTERPRET=1 before triton is first imported to run the kernel on CPU
tensors with Triton's interpreter (tests/conftest.py does).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ops.contract import KERNEL_DTYPES, KERNEL_MAX_DIM, check_shapes


@triton.jit
def _residual_quantize_kernel(
    z_ptr,  # [B, D]
    codebooks_ptr,  # [L, K, D]
    ids_ptr,  # [B, L] int64
    codes_ptr,  # [B, L, D]
    B,
    D,
    K,
    L,
    B_BUCKET,  # only an autotune key: next power of two of B
    BLOCK_B: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_L: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)  # [BLOCK_B]
    row_mask = rows < B
    rows = rows.to(tl.int64)  # B * L * D can pass 2^31
    dims = tl.arange(0, BLOCK_D)
    dim_mask = dims < D
    row_dim_mask = row_mask[:, None] & dim_mask[None, :]
    code_ids = tl.arange(0, BLOCK_K)
    levels = tl.arange(0, BLOCK_L)

    # The residual r_l stays in fp32 registers for all levels; padded dims are 0 and add nothing.
    residual = tl.load(z_ptr + rows[:, None] * D + dims[None, :], mask=row_dim_mask, other=0.0).to(tl.float32)
    ids = tl.zeros([BLOCK_B, BLOCK_L], dtype=tl.int64)

    for level in range(L):
        codebook_ptr = codebooks_ptr + level * K * D
        best_dist = tl.full([BLOCK_B], float("inf"), tl.float32)
        best_id = tl.zeros([BLOCK_B], dtype=tl.int32)
        for k_start in range(0, K, BLOCK_K):
            k = k_start + code_ids  # [BLOCK_K]
            k_mask = k < K
            tile = tl.load(
                codebook_ptr + k[:, None] * D + dims[None, :],
                mask=k_mask[:, None] & dim_mask[None, :],
                other=0.0,
            ).to(tl.float32)  # [BLOCK_K, BLOCK_D]
            # ||r - e||^2 = ||r||^2 - 2 r.e + ||e||^2, without the per-row constant ||r||^2.
            sq_norm = tl.sum(tile * tile, axis=1)  # [BLOCK_K]
            dots = tl.dot(residual, tl.trans(tile), input_precision=PRECISION)  # [BLOCK_B, BLOCK_K]
            dist = tl.where(k_mask[None, :], sq_norm[None, :] - 2.0 * dots, float("inf"))
            tile_dist, tile_id = tl.min(dist, axis=1, return_indices=True)  # leftmost on ties
            # Strictly smaller only: an equal distance in a later tile keeps the lower id, like torch.argmin.
            better = tile_dist < best_dist
            best_dist = tl.where(better, tile_dist, best_dist)
            best_id = tl.where(better, tile_id + k_start, best_id)

        # Gather the chosen codes (the codebook is small and L2-resident) and write them in their own dtype.
        code = tl.load(codebook_ptr + best_id[:, None] * D + dims[None, :], mask=row_dim_mask, other=0.0)
        tl.store(codes_ptr + (rows[:, None] * L + level) * D + dims[None, :], code, mask=row_dim_mask)
        residual = residual - code.to(tl.float32)  # r_{l+1} = r_l - e_l (Lee et al. 2022, eq. 2)
        ids = tl.where(levels[None, :] == level, best_id[:, None].to(tl.int64), ids)

    tl.store(ids_ptr + rows[:, None] * L + levels[None, :], ids, mask=row_mask[:, None] & (levels[None, :] < L))


def _is_interpreted(fn) -> bool:
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError:
        return False
    return isinstance(fn, InterpretedFunction)


# Decided when this module is imported: TRITON_INTERPRET=1 turns the @triton.jit above into the CPU interpreter.
INTERPRETED = _is_interpreted(_residual_quantize_kernel)


def _check_interpreter() -> None:
    # Triton builds its own library (tl.sum, tl.min) when it is first imported; if that happened before
    # TRITON_INTERPRET=1 was set, the interpreted kernel fails inside with an obscure error.
    if INTERPRETED and not _is_interpreted(triton.language.standard.sum):
        raise RuntimeError(
            "triton was imported before TRITON_INTERPRET=1 was set (torch._dynamo imports it): set the variable "
            "before anything imports torch._dynamo or triton, e.g. in the shell or in tests/conftest.py"
        )

# The interpreter gets one fixed config (autotuning times on a GPU); on a GPU autotune per shape.
# BLOCK_B rows share each codebook tile read from L2; BLOCK_K is the argmin's tile over codes.
_INTERPRETER_CONFIG = {"BLOCK_B": 32, "BLOCK_K": 32}
_GPU_CONFIGS = [
    triton.Config({"BLOCK_B": b, "BLOCK_K": k}, num_warps=w, num_stages=s)
    for b, k, w, s in [
        (64, 32, 4, 3),
        (64, 64, 4, 2),
        (64, 128, 4, 2),
        (128, 32, 4, 3),
        (128, 64, 4, 2),
        (128, 64, 8, 2),
        (128, 128, 8, 2),
        (256, 64, 8, 2),
    ]
]
_launcher = (
    _residual_quantize_kernel
    if INTERPRETED
    else triton.autotune(configs=_GPU_CONFIGS, key=["D", "K", "L", "B_BUCKET"])(_residual_quantize_kernel)
)


def _dot_precision(device: torch.device) -> str:
    # 3xTF32 keeps fp32-level distances (argmins agree with the fp32 reference) on tensor cores;
    # GPUs before Ampere have no TF32 and use plain fp32 FMAs.
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8:
        return "tf32x3"
    return "ieee"


def residual_quantize_forward(z: Tensor, codebooks: Tensor, precision: str | None = None) -> tuple[Tensor, Tensor]:
    """The kernel launch alone, no autograd: ids [B, L] int64, codes [B, L, D] in codebooks' dtype.

    `precision` is tl.dot's input_precision for the distances ("ieee", "tf32", "tf32x3");
    None picks tf32x3 on Ampere and later, ieee elsewhere. ops.bench compares them.
    """
    check_shapes(z, codebooks)
    if z.device != codebooks.device:
        raise ValueError(f"z is on {z.device} but codebooks on {codebooks.device}")
    n_rows, dim = z.shape
    n_levels, n_codes, _ = codebooks.shape
    if dim > KERNEL_MAX_DIM:
        raise ValueError(f"the fused kernel keeps a row in registers: D must be <= {KERNEL_MAX_DIM}, got {dim}")
    if n_codes == 0:
        raise ValueError("codebooks have K = 0 codes")
    for name, t in (("z", z), ("codebooks", codebooks)):
        if t.dtype not in KERNEL_DTYPES:
            raise TypeError(f"{name} must be fp32, bf16 or fp16, got {t.dtype}")
    z = z.contiguous()
    codebooks = codebooks.contiguous()
    ids = torch.empty(n_rows, n_levels, dtype=torch.int64, device=z.device)
    codes = torch.empty(n_rows, n_levels, dim, dtype=codebooks.dtype, device=z.device)
    if n_rows == 0 or n_levels == 0:
        return ids, codes

    block_d = max(16, triton.next_power_of_2(dim))  # tl.dot needs every tile side >= 16
    block_l = triton.next_power_of_2(n_levels)
    meta = dict(BLOCK_D=block_d, BLOCK_L=block_l, PRECISION=precision or _dot_precision(z.device))
    args = (z, codebooks, ids, codes, n_rows, dim, n_codes, n_levels, triton.next_power_of_2(n_rows))
    if INTERPRETED:
        _check_interpreter()
        grid = (triton.cdiv(n_rows, _INTERPRETER_CONFIG["BLOCK_B"]),)
        _launcher[grid](*args, **meta, **_INTERPRETER_CONFIG)
    else:
        _launcher[lambda m: (triton.cdiv(n_rows, m["BLOCK_B"]),)](*args, **meta)
    return ids, codes


class ResidualQuantize(torch.autograd.Function):
    """Forward: the fused kernel. Backward (PyTorch): the gather's gradient, summed per chosen code."""

    @staticmethod
    def forward(ctx, z: Tensor, codebooks: Tensor) -> tuple[Tensor, Tensor]:
        ids, codes = residual_quantize_forward(z, codebooks)
        ctx.save_for_backward(ids)
        ctx.codebooks_shape = codebooks.shape
        ctx.codebooks_dtype = codebooks.dtype
        ctx.mark_non_differentiable(ids)
        return ids, codes

    @staticmethod
    def backward(ctx, grad_ids: Tensor | None, grad_codes: Tensor | None) -> tuple[None, Tensor | None]:
        if grad_codes is None or not ctx.needs_input_grad[1]:
            return None, None
        (ids,) = ctx.saved_tensors
        n_levels, n_codes, dim = ctx.codebooks_shape
        # Row l*K + k of the flattened codebooks is code k of level l; accumulate in fp32, then cast once.
        flat_ids = ids + torch.arange(n_levels, device=ids.device) * n_codes  # [B, L]
        grad_codebooks = torch.zeros(n_levels * n_codes, dim, dtype=torch.float32, device=grad_codes.device)
        grad_codebooks.index_add_(0, flat_ids.reshape(-1), grad_codes.reshape(-1, dim).float())
        # z gets no gradient: the argmin is piecewise constant (the STE path adds z's gradient outside this op).
        return None, grad_codebooks.view(n_levels, n_codes, dim).to(ctx.codebooks_dtype)


def triton_residual_quantize(z: Tensor, codebooks: Tensor) -> tuple[Tensor, Tensor]:
    """ids [B, L] int64 and codes [B, L, D] (differentiable w.r.t. codebooks) from the fused kernel."""
    return ResidualQuantize.apply(z, codebooks)
