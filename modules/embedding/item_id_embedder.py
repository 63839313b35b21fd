"""Item token: one free vector per catalogue item, found from the item's whole semantic ID.

Not in the TIGER paper, whose encoder sees an item only through its per-level code embeddings: items that
share codes share their representation, which generalises, but telling apart two items that differ only in
a late code needs the attention layers to combine the tokens. Singh et al. ("Better Generalization with
Semantic IDs: A Case Study in Ranking for Recommendations", RecSys 2024) embed n-grams of semantic IDs; the
full ID as one n-gram is an item-id table. It is found from the codes (a binary search over the catalogue's
sorted IDs), so nothing outside the model changes: batches, beam search and checkpoints keep passing codes.

The table starts at zero: an item seen rarely in training keeps a vector near zero and is represented by its
codes alone, as in the paper. One row per item (not a hashed table, whose unused rows the optimiser, the
gradient clipping and the weights' moving average would still sweep every step)."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class ItemIdEmbedder(nn.Module):
    def __init__(self, n_items: int, codebook_size: int, d_model: int) -> None:
        super().__init__()
        self.n_items, self.codebook_size = n_items, codebook_size
        # The catalogue's IDs as base-K numbers, sorted: row r of the table is the item of keys[r]. Set by
        # index() before training, restored with the weights by load_state_dict. (SemanticIdTrie.lookup maps
        # IDs to items too, but from K entries per prefix: 42 MiB for Beauty against 8 bytes per item here.)
        self.register_buffer("keys", torch.full((n_items,), -1, dtype=torch.long))
        self.emb = nn.Embedding(n_items + 1, d_model, padding_idx=n_items)  # row n_items: padding, unknown IDs
        self.indexed = False

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.emb.weight)

    def key(self, codes: Tensor) -> Tensor:
        """codes [..., T] (one item's full semantic ID in the last dim) -> its ID as one base-K number [...]."""
        key = torch.zeros_like(codes[..., 0])
        for level in range(codes.shape[-1]):  # exact in int64 while K^T < 2^63 (K = 256: T <= 7)
            key = key * self.codebook_size + codes[..., level].clamp(min=0)
        return key

    def index(self, sem_ids: Tensor) -> None:
        """sem_ids [n_items, T]: the catalogue whose items get a row (each ID once, as the tokenizer makes them)."""
        if sem_ids.shape[0] != self.n_items:
            raise ValueError(f"the catalogue has {sem_ids.shape[0]} items, the table {self.n_items} rows")
        keys = self.key(sem_ids.to(self.keys.device)).sort().values
        if (keys[1:] == keys[:-1]).any():
            raise ValueError("two items share a semantic ID: item tokens need unique IDs")
        self.keys.copy_(keys)
        self.indexed = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.indexed = True  # the keys came with the weights

    def rows(self, codes: Tensor) -> Tensor:
        """codes [..., T] (-1 = padding item) -> table rows [...]; n_items for padding and unknown IDs."""
        if not self.indexed:
            raise RuntimeError("ItemIdEmbedder.index(sem_ids) was not called and no state dict was loaded")
        key = self.key(codes)
        pos = torch.searchsorted(self.keys, key).clamp(max=self.n_items - 1)
        known = (self.keys[pos] == key) & (codes >= 0).all(dim=-1)
        return torch.where(known, pos, self.n_items)

    def forward(self, codes: Tensor) -> Tensor:  # [..., T] -> [..., D]
        return self.emb(self.rows(codes))
