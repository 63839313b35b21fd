"""Codebook health: is every level using its codes, and reviving the ones it is not.

Codebook collapse (a few codes take every item, the rest never move) is the most
common failure of RQ-VAE tokenizers: the semantic IDs then collide and carry
little information. Usage and perplexity make it visible; restarting unused codes
on current residuals (Dhariwal et al. 2020, "Jukebox", Sec. 3.3; Zeghidour et al.
2021, "SoundStream", Sec. 3.2) fixes it during training.
"""
from __future__ import annotations

import torch
from torch import Tensor

from modules.quantize import Quantize


def code_counts(ids: Tensor, codebook_size: int) -> Tensor:
    """ids [N, L] -> how often each code was picked, [L, K] int64.
    A scatter, not torch.bincount: on CUDA bincount reads the largest id back to the host to size
    its output, a device sync in every training step that counts codes."""
    counts = torch.zeros(ids.shape[1], codebook_size, dtype=torch.long, device=ids.device)
    return counts.scatter_add_(1, ids.T.long(), torch.ones_like(ids.T, dtype=torch.long))


def codebook_usage(counts: Tensor) -> Tensor:
    """counts [L, K] -> share of codes picked at least once per level, [L] float."""
    return (counts > 0).float().mean(-1)


def codebook_perplexity(counts: Tensor) -> Tensor:
    """counts [L, K] -> exp(entropy) of the code distribution per level, [L]; K means uniform use."""
    p = counts.float() / counts.sum(-1, keepdim=True).clamp(min=1)
    entropy = -(p * p.clamp(min=1e-12).log()).sum(-1)
    return entropy.exp()


@torch.no_grad()
def restart_dead_codes(levels: list[Quantize], counts: Tensor, residuals: Tensor) -> Tensor:
    """Move every code of level l with counts[l] == 0 onto a random residual of that level.

    levels: the L quantisers; counts [L, K] code picks since the last restart;
    residuals [B, L, D] the inputs each level saw in the current batch.
    Returns how many codes were restarted per level, [L].
    """
    restarted = []
    for level, (quantize, level_counts) in enumerate(zip(levels, counts)):
        dead = (level_counts == 0).nonzero().squeeze(-1)  # [n_dead]
        if dead.numel() > 0:
            pick = torch.randint(residuals.shape[0], (dead.numel(),), device=residuals.device)
            quantize.set_codes(dead.to(quantize.codebook.device), residuals[pick, level])
        restarted.append(dead.numel())
    return torch.tensor(restarted)
