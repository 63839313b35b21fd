"""Dropout with cheaper masks on the CPU (not the paper's: train.dropout_masks = "packed").

torch's CPU dropout draws one Bernoulli sample per element from its Mersenne Twister, element by element
(MKL's vectorised generator is used only on some Intel CPUs): about a quarter to a third of a laptop
recipe step (`bench/results/packed_dropout_amazon_cpu.md`). PackedDropout reads each 64-bit word the
generator draws as four 16-bit uniforms (one word per four elements, where torch draws per element), and
keeps an element when its uniform in [0, 2**16) is at or above round(p * 2**16): drop probability p to within 2**-17
(0.1 -> 6554 / 65536 = 0.10000610), survivors scaled by the inverse of that exact keep probability, so
E[output] = input as with nn.Dropout. The masks are other random numbers than torch's: a run with them
is not bit-identical to one without, and draws from the same (global, seeded, checkpointed) generator.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

LEVELS = 1 << 16  # a 16-bit uniform's values


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> Tensor:
    """Bool [*shape]: True (keep) with probability 1 - round(p * 2**16) / 2**16, the elements independent."""
    n = math.prod(shape)
    # [ceil(n / 4)] int64 words over their full range (random_ from the type's minimum, no upper bound):
    # each word's four int16 lanes are independent uniforms over [-2**15, 2**15).
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(torch.iinfo(torch.int64).min, None)
    uniforms = words.view(torch.int16)[:n].view(shape)
    return uniforms >= round(p * LEVELS) - LEVELS // 2  # P(uniform < threshold) = round(p * 2**16) / 2**16


class PackedDropout(nn.Module):
    """nn.Dropout(p) with keep_mask's masks: same distribution up to p's rounding to 1/2**16."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability {p!r}: must be in [0, 1)")
        self.p = p
        self.scale = LEVELS / (LEVELS - round(p * LEVELS))  # 1 / the exact keep probability

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        # The float mask is built without autograd; x * it saves it for the backward (grad * mask).
        return x * (keep_mask(x.shape, self.p, x.device).to(x.dtype) * self.scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_packed_dropout(model: nn.Module) -> int:
    """Replace every nn.Dropout inside `model` by PackedDropout of the same p -> how many were replaced.
    Dropout that is not a module (the attention weights' inside scaled_dot_product_attention) stays torch's."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, PackedDropout(child.p))
                replaced += 1
    return replaced
