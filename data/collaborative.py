"""Collaborative item vectors from the training sequences, to append to the text embedding.

Not in the TIGER paper: its semantic IDs come from item text alone, so the first code groups
items that read alike, not items bought one after another (on Beauty 10% of the validation
transitions "last item -> next item" fall in one k-means cluster of the text embeddings). LETTER
(Wang et al., CIKM 2024) adds collaborative signal to the tokenizer with a contrastive loss; the
simpler route here gives the RQ-VAE a low-rank factor of the item co-occurrence matrix as extra
input features (measured in studies/results/collaborative_ids_beauty.md).

Only the training split is counted (a training target and the `window` items just before it,
as in data/splits.py's leave-one-out), so no validation or test target leaks into the IDs.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from data.splits import leave_one_out


def cooccurrence_pairs(users: np.ndarray, items: np.ndarray, window: int) -> tuple[Tensor, Tensor]:
    """Interactions (grouped by user, oldest first) -> (earlier item [P], training target [P]) for every
    training target and each of the `window` items before it."""
    rows, lengths = leave_one_out(users, window)["train"]  # lengths = min(position, window)
    items = torch.from_numpy(np.array(items, dtype=np.int64))  # a copy: polars hands out read-only arrays
    rows, lengths = torch.from_numpy(rows), torch.from_numpy(lengths)
    earlier, target = [], []
    for back in range(1, window + 1):
        keep = lengths >= back
        earlier.append(items[rows[keep] - back])
        target.append(items[rows[keep]])
    return torch.cat(earlier), torch.cat(target)


def collaborative_vectors(users: np.ndarray, items: np.ndarray, n_items: int, dim: int, window: int = 3,
                          seed: int = 0) -> Tensor:
    """[n_items, dim] unit rows: the top-`dim` factor of the positive pointwise mutual information
    of training co-occurrences (Levy & Goldberg, NeurIPS 2014: word2vec ~ a factorised shifted PMI).
    Items that never co-occur in training get a zero row."""
    if not 0 < dim < n_items:
        raise ValueError(f"dim={dim}: must be in [1, n_items - 1 = {n_items - 1}]")
    earlier, target = cooccurrence_pairs(users, items, window)
    i, j = torch.cat([earlier, target]), torch.cat([target, earlier])  # symmetric: bought together, either order
    counts = torch.sparse_coo_tensor(torch.stack([i, j]), torch.ones(len(i)), (n_items, n_items),
                                     check_invariants=False).coalesce()
    row, col = counts.indices()
    n_ij = counts.values()  # [nnz]
    n_i = torch.zeros(n_items).index_add_(0, row, n_ij)  # [n_items] marginals
    pmi = torch.log(n_ij * n_ij.sum() / (n_i[row] * n_i[col]))
    ppmi = torch.sparse_coo_tensor(counts.indices(), pmi.clamp(min=0), (n_items, n_items),
                                   check_invariants=False).coalesce()
    with torch.random.fork_rng(devices=[]):  # svd_lowrank draws its random projection from the global stream
        torch.manual_seed(seed)
        u, s, _ = torch.svd_lowrank(ppmi, q=dim, niter=6)  # [n_items, dim], [dim]
    return torch.nn.functional.normalize(u * s.sqrt(), dim=1)  # zero rows stay zero
