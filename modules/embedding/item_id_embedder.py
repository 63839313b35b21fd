"""Item token: an item's whole semantic ID hashed into a fixed number of buckets, one free vector each.

Not in the TIGER paper, whose encoder sees an item only through its per-level code embeddings: items that
share codes share their representation, which generalises, but telling apart two items that differ only in
a late code needs the attention layers to combine the tokens. Singh et al. ("Better Generalization with
Semantic IDs: A Case Study in Ranking for Recommendations", RecSys 2024) embed n-grams of semantic IDs; the
full ID as one n-gram is a hashed item-id table, found from the codes alone, so nothing outside the model
changes (batches, beam search and checkpoints keep passing codes).

The table starts at zero: an item seen rarely in training keeps a vector near zero and is represented by its
codes alone, as in the paper."""
from __future__ import annotations

import torch
from torch import Tensor, nn

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed int64: Fibonacci hashing's multiplier


class ItemIdEmbedder(nn.Module):
    def __init__(self, n_buckets: int, codebook_size: int, d_model: int) -> None:
        super().__init__()
        self.n_buckets, self.codebook_size = n_buckets, codebook_size
        self.emb = nn.Embedding(n_buckets, d_model)

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.emb.weight)

    def buckets(self, codes: Tensor) -> Tensor:
        """codes [..., T] (one item's full semantic ID in the last dim, codes < codebook_size) -> bucket ids [...]."""
        key = torch.zeros_like(codes[..., 0])
        for level in range(codes.shape[-1]):  # the ID as one number in base K: unique per item
            key = key * self.codebook_size + codes[..., level].clamp(min=0)
        mixed = key * _GOLDEN  # wraps around in int64; the high bits depend on every code
        return ((mixed >> 32) & 0xFFFFFFFF) % self.n_buckets

    def forward(self, codes: Tensor) -> Tensor:  # [..., T] -> [..., D]
        return self.emb(self.buckets(codes))
