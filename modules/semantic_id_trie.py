"""Prefix tree of the catalogue's semantic IDs, as dense per-depth lookup tables.

Every prefix of length d of some item's ID is a node at depth d, numbered 0..n_d-1
(depth 0 has the single empty prefix). For each depth one table

    children[d]  [n_d, K] int64:  children[d][node, code] = node id of prefix+code at depth d+1,
                                  or -1 if no item's ID continues the prefix with that code;
                                  at the last depth the "node" is the item id itself.

so "which tokens may follow these prefixes" is one gather, batched on any device,
and walking a full ID down the tables looks up its item id. `sizes[d][node]` counts the items
under a node, so `blocked` can tell which prefixes lead only to items a user must not be shown.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor


class SemanticIdTrie:
    def __init__(self, sem_ids: Tensor, codebook_size: int | None = None) -> None:
        """sem_ids [N, T] int: row i = the semantic ID of item i (rows must be distinct)."""
        if sem_ids.dim() != 2 or sem_ids.shape[0] == 0 or sem_ids.dtype.is_floating_point:
            raise ValueError(f"sem_ids must be a non-empty integer tensor [N, T], got {sem_ids.dtype} {tuple(sem_ids.shape)}")
        sem_ids = sem_ids.long().cpu()
        K = int(sem_ids.max()) + 1 if codebook_size is None else codebook_size
        if sem_ids.min() < 0 or sem_ids.max() >= K:
            raise ValueError(f"semantic ID codes must lie in [0, {K}), got [{int(sem_ids.min())}, {int(sem_ids.max())}]")
        if torch.unique(sem_ids, dim=0).shape[0] != sem_ids.shape[0]:
            raise ValueError("two items share a semantic ID: the trie could not tell them apart "
                             "(the tokenizer's collision token should make every ID unique)")
        N, T = sem_ids.shape
        self.n_items, self.depth, self.codebook_size = N, T, K
        self.sem_ids = sem_ids
        node = torch.zeros(N, dtype=torch.long)  # node of each item's prefix at the current depth
        self.children: list[Tensor] = []
        self.sizes: list[Tensor] = [torch.tensor([N])]  # sizes[d] [n_d]: items under each node at depth d
        for d in range(T):
            child = (torch.unique(sem_ids[:, : d + 1], dim=0, return_inverse=True)[1]
                     if d < T - 1 else torch.arange(N))
            table = torch.full((int(node.max()) + 1, K), -1, dtype=torch.long)
            table[node, sem_ids[:, d]] = child
            self.children.append(table)
            self.sizes.append(torch.bincount(child))
            node = child

    def to(self, device: torch.device | str) -> "SemanticIdTrie":
        self.children = [t.to(device) for t in self.children]
        self.sizes = [t.to(device) for t in self.sizes]
        self.sem_ids = self.sem_ids.to(device)
        return self

    def allowed(self, depth: int, nodes: Tensor) -> Tensor:
        """nodes [M] at `depth` (-1 = dead prefix) -> bool [M, K]: codes that extend the prefix to a valid one."""
        return self.next_nodes(depth, nodes[:, None].expand(-1, self.codebook_size),
                               torch.arange(self.codebook_size, device=nodes.device)) >= 0

    def next_nodes(self, depth: int, nodes: Tensor, codes: Tensor) -> Tensor:
        """Node reached by appending `codes` to prefixes `nodes` at `depth` (broadcast); -1 where invalid.
        At the last depth the result is the item id."""
        table = self.children[depth]
        nodes, codes = torch.broadcast_tensors(nodes, codes)
        valid = (nodes >= 0) & (codes >= 0) & (codes < self.codebook_size)
        out = table[nodes.clamp(min=0), codes.clamp(0, self.codebook_size - 1)]
        return torch.where(valid, out, -1)

    def blocked(self, depth: int, nodes: Tensor, exclude: Tensor) -> Tensor:
        """nodes [B, W] prefixes at `depth` (W beams per row), exclude [B, E] item ids per row (-1 = none)
        -> bool [B, W, K]: the codes after which every completion is an excluded item of that row, so a
        beam search that masks them never spends a beam on a prefix that can only end on excluded items."""
        valid = exclude >= 0
        first = ~torch.tril(exclude[:, :, None] == exclude[:, None, :], diagonal=-1).any(dim=-1)
        distinct = valid & first                                                  # [B, E]: each item once
        ids = self.sem_ids[exclude.clamp(min=0)]                                  # [B, E, T]
        parent = torch.zeros_like(exclude)
        for d in range(depth):
            parent = self.next_nodes(d, parent, ids[..., d])                      # [B, E] node at `depth`
        child = self.next_nodes(depth, parent, ids[..., depth])                   # [B, E] node at depth + 1
        # excluded items under each child: when that is all of the child's items, its code is blocked
        under = ((child[:, :, None] == child[:, None, :]) & distinct[:, None, :]).sum(dim=-1)  # [B, E]
        full = distinct & (under == self.sizes[depth + 1][child.clamp(min=0)])
        hits = (nodes[:, :, None] == parent[:, None, :]) & full[:, None, :]      # [B, W, E]
        codes = rearrange(ids[..., depth], "b e -> b 1 e").expand_as(hits)       # [B, W, E]: each item's code
        out = torch.zeros(*hits.shape[:2], self.codebook_size, device=hits.device)
        return out.scatter_add_(2, codes, hits.float()) > 0                        # [B, W, K]

    def mass(self, depth: int, nodes: Tensor, items: Tensor, weights: Tensor) -> Tensor:
        """nodes [B, W] prefixes at `depth`, items [B, E] distinct item ids per row (-1 = none) with weights
        [B, E] -> float [B, W, K]: for each code after each prefix, the summed weight of the row's items whose
        ID continues the prefix with that code (at the last depth: the item's own weight)."""
        ids = self.sem_ids[items.clamp(min=0)]                                    # [B, E, T]
        parent = torch.zeros_like(items)
        for d in range(depth):
            parent = self.next_nodes(d, parent, ids[..., d])                      # [B, E] node at `depth`
        hits = (nodes[:, :, None] == parent[:, None, :]) & (items >= 0)[:, None, :]  # [B, W, E]
        codes = rearrange(ids[..., depth], "b e -> b 1 e").expand_as(hits)       # [B, W, E]: each item's code
        out = torch.zeros(*hits.shape[:2], self.codebook_size, device=hits.device)
        return out.scatter_add_(2, codes, hits * rearrange(weights.float(), "b e -> b 1 e"))

    def path_masks(self, ids: Tensor) -> Tensor:
        """ids [..., T] full semantic IDs of existing items -> bool [..., T, K]: at each depth, the codes that
        extend the ID's own prefix to a valid one (teacher forcing's view of the constrained search).
        A row of -1 (all-positions training: not a target) gets no allowed code."""
        flat = ids.reshape(-1, self.depth)  # [M, T]
        nodes = torch.zeros(flat.shape[0], dtype=torch.long, device=ids.device)
        masks = []
        for d in range(self.depth):
            masks.append(self.allowed(d, nodes))
            nodes = self.next_nodes(d, nodes, flat[:, d])
        return torch.stack(masks, dim=1).view(*ids.shape, self.codebook_size)

    def path_blocked(self, ids: Tensor, exclude: Tensor) -> Tensor:
        """ids [B, T] full semantic IDs, exclude [B, E] item ids per row (-1 = none) -> bool [B, T, K]: at each
        depth, the codes after the ID's own prefix whose every completion is an excluded item of that row
        (teacher forcing's view of `blocked`, as path_masks is of `allowed`)."""
        nodes = torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)
        blocked = []
        for d in range(self.depth):
            blocked.append(self.blocked(d, nodes[:, None], exclude)[:, 0])
            nodes = self.next_nodes(d, nodes, ids[:, d])
        return torch.stack(blocked, dim=1)

    def item_ids(self, ids: Tensor) -> Tensor:
        """ids [..., T] semantic IDs (-1 rows: padding) -> item ids [...], -1 for padding or an ID no item has."""
        return self.lookup(ids.reshape(-1, self.depth)).view(ids.shape[:-1])

    def lookup(self, ids: Tensor) -> Tensor:
        """ids [M, T] full semantic IDs -> item ids [M], -1 for an ID that no item has."""
        if ids.dim() != 2 or ids.shape[1] != self.depth:
            raise ValueError(f"expected ids [M, {self.depth}], got {tuple(ids.shape)}")
        nodes = torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)
        for d in range(self.depth):
            nodes = self.next_nodes(d, nodes, ids[:, d])
        return nodes
