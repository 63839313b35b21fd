"""One level of vector quantisation: nearest code plus a way to pass gradients through it.

The argmin that picks a code has no gradient, so each forward mode says how the
encoder learns anyway:
  "ste"       straight-through estimator: the code's gradient is copied onto the
              input (van den Oord et al. 2017, "Neural Discrete Representation Learning").
  "gumbel"    a Gumbel-softmax sample over -distances, hard one-hot forward and soft
              backward (Jang et al. 2017), at temperature 1.
  "rotation"  the rotation trick (Fifty et al. 2024, "Restructuring Vector
              Quantization with the Rotation Trick"): the input is rotated and
              rescaled onto the code, the rotation treated as a constant, so the
              gradient keeps the angle between input and code.
These modes describe one level. RqVae stacks levels and gives its decoder one straight-through
(or one rotation) over the whole stack, not one per level: see RqVae.quantize.

Losses follow TIGER (Rajput et al. 2023, Sec. 3.1):
    codebook loss   ||sg[r] - e||^2     moves the code towards the residual
    commitment loss ||r - sg[e]||^2     keeps the encoder close to its code (x beta in RqVae)
summed over the latent dimension, averaged over the batch.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import Tensor, nn

from modules.kmeans import squared_distances
from ops import residual_quantize

FORWARD_MODES = ("ste", "gumbel", "rotation")


def rotate_onto(x: Tensor, code: Tensor, eps: float = 1e-8) -> Tensor:
    """Rotation trick (Fifty et al. 2024, Sec. 4.2): a value equal to `code` whose gradient
    w.r.t. x goes through the rotation R and scale ||code||/||x||, both held constant.

    x, code [B, D]. With u = x/|x|, q = code/|code|, w = (u+q)/|u+q|:
    R x = x - 2 (x.w) w + 2 (x.u) q, the Householder form that needs no D x D matrix.
    """
    x_norm = x.norm(dim=-1, keepdim=True)
    code_norm = code.norm(dim=-1, keepdim=True)
    u = (x / (x_norm + eps)).detach()
    q = (code / (code_norm + eps)).detach()
    w = F.normalize(u + q, dim=-1, eps=eps)
    rotated = (
        x
        - 2.0 * (x * w).sum(-1, keepdim=True) * w
        + 2.0 * (x * u).sum(-1, keepdim=True) * q
    )
    return rotated * (code_norm / (x_norm + eps)).detach()


class QuantizeOutput(NamedTuple):
    out: Tensor  # [B, D] a one-level quantiser's decoder input: value = code, gradient per forward mode
    codes: Tensor  # [B, D] the chosen code vectors (gradient only to the codebook)
    ids: Tensor  # [B] int64
    codebook_loss: Tensor  # scalar
    commitment_loss: Tensor  # scalar, not yet multiplied by beta


class Quantize(nn.Module):
    def __init__(
        self,
        dim: int,
        codebook_size: int,
        forward_mode: str = "ste",
    ) -> None:
        super().__init__()
        if forward_mode not in FORWARD_MODES:
            raise ValueError(f"forward_mode must be one of {FORWARD_MODES}, got {forward_mode!r}")
        self.dim, self.codebook_size = dim, codebook_size
        self.forward_mode = forward_mode
        self.codebook = nn.Parameter(torch.randn(codebook_size, dim) / math.sqrt(dim))  # [K, D]

    @property
    def is_plain(self) -> bool:
        """Plain STE: the case RqVae batches over levels in one fused call."""
        return self.forward_mode == "ste"

    @torch.no_grad()
    def set_codes(self, index: Tensor, vectors: Tensor) -> None:
        """Make the codes at `index` [n] equal `vectors` [n, D] (k-means init, dead-code restart)."""
        self.codebook[index] = vectors.to(self.codebook.dtype)

    def forward(self, x: Tensor) -> QuantizeOutput:
        """x [B, D] -> QuantizeOutput. In eval mode every forward mode returns the nearest code."""
        codebook = self.codebook  # [K, D]
        if self.training and self.forward_mode == "gumbel":
            logits = -squared_distances(x, codebook)  # [B, K], differentiable w.r.t. x and codebook
            one_hot = F.gumbel_softmax(logits, tau=1.0, hard=True)  # [B, K]
            ids = one_hot.argmax(-1)
            codes = codebook[ids]
            out = einsum(one_hot, codebook, "b k, k d -> b d")
        else:
            ids, codes = residual_quantize(x, rearrange(codebook, "k d -> 1 k d"))  # [B, 1], [B, 1, D]
            ids, codes = ids[:, 0], codes[:, 0].to(x.dtype)
            if self.forward_mode == "rotation" and self.training:
                out = rotate_onto(x, codes)
            else:
                out = x + (codes - x).detach()  # straight-through (value = code)
        codebook_loss = (x.detach() - codes).pow(2).sum(-1).mean()
        commitment_loss = (x - codes.detach()).pow(2).sum(-1).mean()
        return QuantizeOutput(out, codes, ids, codebook_loss, commitment_loss)
