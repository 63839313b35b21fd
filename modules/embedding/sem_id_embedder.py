"""One embedding table for every semantic-ID token, plus special tokens.

Codes of different levels are different tokens (code 3 of level 0 means something
else than code 3 of level 2), so the vocabulary is
    token = level * codebook_size + code      for level in [0, n_levels), code in [0, codebook_size)
followed by the special tokens PAD and BOS.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class SemIdEmbedder(nn.Module):
    N_SPECIAL = 2

    def __init__(self, n_levels: int, codebook_size: int, d_model: int) -> None:
        super().__init__()
        self.n_levels, self.codebook_size = n_levels, codebook_size
        self.pad_token = n_levels * codebook_size
        self.bos_token = self.pad_token + 1
        self.emb = nn.Embedding(n_levels * codebook_size + self.N_SPECIAL, d_model)

    def tokens(self, codes: Tensor, levels: Tensor) -> Tensor:
        """codes [...] (-1 = padding), levels broadcastable to codes -> token ids [...]."""
        return torch.where(codes >= 0, levels * self.codebook_size + codes, self.pad_token)

    def forward(self, tokens: Tensor) -> Tensor:  # [...] -> [..., D]
        return self.emb(tokens)
