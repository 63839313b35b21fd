"""RQ-VAE: the semantic-ID tokenizer of TIGER (Rajput et al. 2023, Sec. 3.1).

An MLP encoder maps an item's content embedding x to a latent z; n_layers
residual codebooks quantise it coarse to fine (r_0 = z, c_l = nearest code to r_l,
r_{l+1} = r_l - e_{c_l}); the MLP decoder reconstructs x from sum_l e_{c_l}.
The tuple (c_0, ..., c_{L-1}) is the item's semantic ID.

    loss = ||x - x_hat||^2 + sum_l ( ||sg[r_l] - e_{c_l}||^2 + beta ||r_l - sg[e_{c_l}]||^2 )
    z_q  = z + sg[sum_l e_{c_l} - z]     the decoder input: d z_q / d z = I (see RqVae.quantize)
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from modules.kmeans import kmeans
from modules.quantize import Quantize, rotate_onto
from ops import residual_quantize


def mlp(dims: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RqVaeOutput(NamedTuple):
    loss: Tensor  # scalar: reconstruction + quantisation
    reconstruction_loss: Tensor  # scalar
    quantization_loss: Tensor  # scalar: sum over levels of codebook + beta * commitment
    ids: Tensor  # [B, L] int64, the semantic ID
    residuals: Tensor  # [B, L, D] detached input of each level (for dead-code restarts)
    reconstruction: Tensor  # [B, input_dim]


class RqVae(nn.Module):
    def __init__(
        self,
        input_dim: int,
        *,  # no defaults here: train_rqvae.train()'s gin signature holds the paper's values, once
        hidden_dims: Sequence[int],
        latent_dim: int,
        codebook_size: int,
        n_layers: int,
        commitment_weight: float,
        forward_mode: str,
    ) -> None:
        super().__init__()
        self.input_dim, self.latent_dim = input_dim, latent_dim
        self.codebook_size, self.n_layers = codebook_size, n_layers
        self.commitment_weight = commitment_weight  # beta, TIGER uses 0.25
        # input -> 512 -> 256 -> 128 -> 32 with ReLU (TIGER Sec. 4.1), decoder mirrored.
        self.encoder = mlp([input_dim, *hidden_dims, latent_dim])
        self.decoder = mlp([latent_dim, *reversed(hidden_dims), input_dim])
        self.levels = nn.ModuleList(
            Quantize(latent_dim, codebook_size, forward_mode) for _ in range(n_layers)
        )
        # Saved with the weights so a resumed run does not re-initialise its codebooks.
        self.register_buffer("codebooks_initialized", torch.tensor(False))

    @torch.no_grad()
    def init_codebooks(self, x: Tensor, kmeans_iters: int = 20) -> None:
        """k-means on the residuals of a batch, level by level (TIGER Sec. 3.1)."""
        residual = self.encoder(x)  # [B, D]
        for quantize in self.levels:
            centroids = kmeans(residual, self.codebook_size, max_iters=kmeans_iters)  # [K, D]
            quantize.set_codes(torch.arange(self.codebook_size, device=x.device), centroids)
            residual = residual - _nearest(quantize, residual)
        self.codebooks_initialized.fill_(True)

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """z [B, D] -> (z_q [B, D] decoder input, ids [B, L], residuals [B, L, D], quantisation loss).

        z_q's value is sum_l e_l. How the reconstruction loss reaches the encoder, per forward mode:
          "ste"       one straight-through over the whole stack, z_q = z + sg[sum_l e_l - z], so
                      d z_q / d z = I (Lee et al. 2022, "Autoregressive Image Generation using Residual
                      Quantization", Sec. 3.1; their code: quants_trunc = x + (quants_trunc - x).detach()).
                      A straight-through per level, sum_l r_l + sg[e_l - r_l], would pass L * I back,
                      since every residual r_l = z - sum_{j<l} sg[e_j] has d r_l / d z = I.
          "rotation"  the same one step with the rotation trick in place of the identity (Fifty et al.
                      2024, Sec. 4.2): z rotated and rescaled onto z_q, d z_q / d z = (|z_q|/|z|) R.
                      The paper treats a single quantiser; rotating each level's residual onto its code
                      would sum L such maps, each scaled by |e_l|/|r_l|, which blows up as a deep
                      residual nears zero.
          "gumbel"    does not apply: there is no copy of z to collapse. Each level's sample one_hot_l @ C_l
                      takes the gradient of softmax((-||r_l - e||^2 + g) / t) (Jang et al. 2017), which
                      reaches z only through that level's logits; z_q is the sum of the L samples.
        Eval mode returns the nearest codes in every mode. The losses are TIGER's (Sec. 3.1), per level.
        """
        if all(q.is_plain for q in self.levels):
            # Plain STE everywhere: one fused call over all levels, same numbers as the loop below.
            codebooks = torch.stack([q.codebook for q in self.levels])  # [L, K, D]
            ids, codes = residual_quantize(z, codebooks)  # [B, L], [B, L, D]
            codes = codes.to(z.dtype)
            # r_l = z - sum_{j<l} sg[e_j]: the residual keeps its gradient to the encoder (commitment loss).
            previous = torch.cumsum(codes.detach(), dim=1) - codes.detach()
            residuals = rearrange(z, "b d -> b 1 d") - previous  # [B, L, D]
            codebook_loss = (residuals.detach() - codes).pow(2).sum(-1).mean(0)  # [L]
            commitment_loss = (residuals - codes.detach()).pow(2).sum(-1).mean(0)  # [L]
            loss = (codebook_loss + self.commitment_weight * commitment_loss).sum()
            z_q = z + (codes.sum(1) - z).detach()  # straight-through once, not per level
            return z_q, ids, residuals.detach(), loss

        residual, codes_sum, relaxed_sum, loss = z, torch.zeros_like(z), torch.zeros_like(z), z.new_zeros(())
        ids, residuals = [], []
        for quantize in self.levels:
            q = quantize(residual)
            residuals.append(residual.detach())
            ids.append(q.ids)
            codes_sum = codes_sum + q.codes
            relaxed_sum = relaxed_sum + q.out  # what Gumbel's decoder sees
            loss = loss + q.codebook_loss + self.commitment_weight * q.commitment_loss
            residual = residual - q.codes.detach()
        mode = self.levels[0].forward_mode
        if self.training and mode == "gumbel":
            z_q = relaxed_sum
        elif self.training and mode == "rotation":
            z_q = rotate_onto(z, codes_sum)
        else:
            z_q = z + (codes_sum - z).detach()
        return z_q, torch.stack(ids, 1), torch.stack(residuals, 1), loss

    def forward(self, x: Tensor) -> RqVaeOutput:
        """x [B, input_dim] -> RqVaeOutput."""
        z = self.encoder(x)  # [B, D]
        z_q, ids, residuals, quantization_loss = self.quantize(z)
        reconstruction = self.decoder(z_q)  # [B, input_dim]
        reconstruction_loss = (reconstruction - x).pow(2).sum(-1).mean()
        return RqVaeOutput(
            reconstruction_loss + quantization_loss, reconstruction_loss, quantization_loss, ids, residuals, reconstruction
        )

    @torch.no_grad()
    def semantic_ids(self, x: Tensor) -> Tensor:
        """x [B, input_dim] -> nearest-code IDs [B, L] (no sampling, whatever the forward mode)."""
        codebooks = torch.stack([q.codebook for q in self.levels])  # [L, K, D]
        ids, _ = residual_quantize(self.encoder(x), codebooks)
        return ids


def _nearest(quantize: Quantize, residual: Tensor) -> Tensor:
    """The nearest effective code of one level for each row of residual [B, D]."""
    _, codes = residual_quantize(residual, rearrange(quantize.codebook, "k d -> 1 k d"))
    return codes[:, 0].to(residual.dtype)
