"""One level of vector quantisation: nearest code plus a way to pass gradients through it.

The argmin that picks a code has no gradient, so each forward mode says how the
encoder learns anyway:
  "ste"       straight-through estimator: the code's gradient is copied onto the
              input (van den Oord et al. 2017, "Neural Discrete Representation Learning").
  "gumbel"    a Gumbel-softmax sample over -distances, hard one-hot forward and soft
              backward (Jang et al. 2017), with a temperature that can be annealed.
  "rotation"  the rotation trick (Fifty et al. 2024, "Restructuring Vector
              Quantization with the Rotation Trick"): the input is rotated and
              rescaled onto the code, the rotation treated as a constant, so the
              gradient keeps the angle between input and code.
Options: SimVQ (Zhu et al. 2024, "Addressing Representation Collapse in Vector
Quantized Models with One Linear Layer"): codes = frozen base codebook @ a learnt
linear map, so every code moves even when it is never picked; and L2-normalised codes.
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


def annealed_temperature(step: int, start: float, end: float, anneal_steps: int) -> float:
    """Gumbel-softmax temperature decayed exponentially from `start` to `end` over `anneal_steps`."""
    if anneal_steps <= 0 or start == end:
        return end
    progress = min(step / anneal_steps, 1.0)
    return start * math.exp(progress * math.log(end / start))


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
        sim_vq: bool = False,
        normalize_codes: bool = False,
    ) -> None:
        super().__init__()
        if forward_mode not in FORWARD_MODES:
            raise ValueError(f"forward_mode must be one of {FORWARD_MODES}, got {forward_mode!r}")
        self.dim, self.codebook_size = dim, codebook_size
        self.forward_mode, self.sim_vq, self.normalize_codes = forward_mode, sim_vq, normalize_codes
        # [K, D]; with SimVQ this base codebook is frozen and only the projection learns.
        self.codebook = nn.Parameter(torch.randn(codebook_size, dim) / math.sqrt(dim), requires_grad=not sim_vq)
        self.projection = nn.Linear(dim, dim, bias=False) if sim_vq else None
        if self.projection is not None:
            nn.init.eye_(self.projection.weight)

    @property
    def is_plain(self) -> bool:
        """Plain STE on a raw codebook: the case RqVae can batch over levels."""
        return self.forward_mode == "ste" and not self.sim_vq and not self.normalize_codes

    def effective_codebook(self) -> Tensor:
        """The codes actually compared with the input, [K, D]."""
        codebook = self.codebook
        if self.projection is not None:
            codebook = self.projection(codebook)  # SimVQ: C W
        if self.normalize_codes:
            codebook = F.normalize(codebook, dim=-1)
        return codebook

    @torch.no_grad()
    def set_codes(self, index: Tensor, vectors: Tensor) -> None:
        """Make the effective codes at `index` [n] equal `vectors` [n, D] (k-means init, dead-code restart)."""
        vectors = vectors.to(self.codebook.dtype)
        if self.projection is not None:
            # SimVQ codes are base @ W^T (nn.Linear), so base^T = W^-1 vectors^T.
            vectors = torch.linalg.solve(self.projection.weight, vectors.T).T
        self.codebook[index] = vectors

    def forward(self, x: Tensor, temperature: float = 1.0) -> QuantizeOutput:
        """x [B, D] -> QuantizeOutput. In eval mode every forward mode returns the nearest code."""
        codebook = self.effective_codebook()  # [K, D]
        if self.training and self.forward_mode == "gumbel":
            logits = -squared_distances(x, codebook)  # [B, K], differentiable w.r.t. x and codebook
            one_hot = F.gumbel_softmax(logits, tau=temperature, hard=True)  # [B, K]
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
