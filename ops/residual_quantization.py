"""Residual quantization: for each level, the nearest code to the current residual.

Dispatcher plus the PyTorch reference. The reference is the CPU path and the
oracle the Triton kernel (ops/triton/) is tested against.

    z          [B, D]     latents
    codebooks  [L, K, D]  one codebook of K codes per level
 -> ids        [B, L]     int64, the chosen code per level
    codes      [B, L, D]  the chosen code vectors (codebooks' dtype); differentiable
                          w.r.t. the codebooks (the gather), not w.r.t. z (argmin)

Residuals follow from the outputs: r_0 = z, r_{l+1} = r_l - codes[:, l]
(Lee et al. 2022, "Autoregressive Image Generation using Residual Quantization", eq. 2).
"""
from __future__ import annotations

import os

import torch
from torch import Tensor

from ops.contract import KERNEL_DTYPES, KERNEL_MAX_DIM, check_shapes

FORCE_REFERENCE_ENV = "TIGER_FORCE_REFERENCE"


def residual_quantize_reference(z: Tensor, codebooks: Tensor) -> tuple[Tensor, Tensor]:
    check_shapes(z, codebooks)
    residual = z.detach().float()
    ids, codes = [], []
    for codebook in codebooks.unbind(0):
        cb = codebook.detach().float()
        # ||r - e||^2 = ||r||^2 - 2 r.e + ||e||^2; ||r||^2 is constant per row, so it is left out of the argmin.
        dist = (cb * cb).sum(-1) - 2.0 * residual @ cb.T  # [B, K]
        idx = dist.argmin(dim=-1)
        code = codebook[idx]  # [B, D], keeps the gradient to the codebook
        residual = residual - code.detach().float()
        ids.append(idx)
        codes.append(code)
    return torch.stack(ids, dim=1), torch.stack(codes, dim=1)


def _kernel_available() -> bool:
    try:
        import ops.triton.residual_quantization  # noqa: F401
    except ImportError:
        return False
    return True


def reference_forced(force_reference: bool = False) -> bool:
    """The caller's switch (bound from gin by the entry points) or TIGER_FORCE_REFERENCE=1."""
    return force_reference or os.environ.get(FORCE_REFERENCE_ENV, "0") == "1"


def uses_kernel(z: Tensor, codebooks: Tensor, force_reference: bool = False) -> bool:
    """Whether `residual_quantize` takes the fused Triton kernel for these inputs."""
    return (
        z.is_cuda
        and codebooks.is_cuda
        and not reference_forced(force_reference)
        and z.shape[-1] <= KERNEL_MAX_DIM
        and z.dtype in KERNEL_DTYPES
        and codebooks.dtype in KERNEL_DTYPES
        and _kernel_available()
    )


def residual_quantize(z: Tensor, codebooks: Tensor, force_reference: bool = False) -> tuple[Tensor, Tensor]:
    """CUDA tensors go to the fused Triton kernel, everything else to the reference.

    `force_reference=True` (callers bind it from gin) or the environment variable
    TIGER_FORCE_REFERENCE=1 forces the reference. With L = 1 this is a nearest-code
    search (k-means assignment, the Gumbel and rotation-trick modes' argmin).
    """
    check_shapes(z, codebooks)
    use_kernel = uses_kernel(z, codebooks, force_reference)
    if use_kernel:
        from ops.triton.residual_quantization import triton_residual_quantize

        return triton_residual_quantize(z, codebooks)
    return residual_quantize_reference(z, codebooks)
