"""What the residual-quantization reference (ops/residual_quantization.py) and the fused Triton
kernel (ops/triton/residual_quantization.py) share: the input shapes, and which inputs the kernel
takes. Both import it; neither imports the other at module level, so there is no import cycle."""
from __future__ import annotations

import torch
from torch import Tensor

# The kernel keeps a latent row in registers; wider latents go to the reference.
KERNEL_MAX_DIM = 128
KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def check_shapes(z: Tensor, codebooks: Tensor) -> None:
    if z.dim() != 2 or codebooks.dim() != 3 or z.shape[1] != codebooks.shape[2]:
        raise ValueError(f"expected z [B, D] and codebooks [L, K, D], got {tuple(z.shape)} and {tuple(codebooks.shape)}")
