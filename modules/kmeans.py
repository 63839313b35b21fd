"""Vectorised k-means (Lloyd's algorithm) for codebook initialisation.

TIGER initialises each RQ-VAE codebook by k-means on the first training batch
(Rajput et al. 2023, Sec. 3.1, following Zeghidour et al. 2021). A random
codebook leaves most codes far from the data: they are never picked, get no
gradient, and the level collapses onto a handful of codes.
"""
from __future__ import annotations

import torch
from torch import Tensor


def squared_distances(x: Tensor, centroids: Tensor) -> Tensor:
    """||x_i - c_k||^2 for x [N, D], centroids [K, D] -> [N, K]."""
    return (x * x).sum(-1, keepdim=True) - 2.0 * x @ centroids.T + (centroids * centroids).sum(-1)


@torch.no_grad()
def kmeans_plus_plus(x: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each new seed is drawn with probability
    proportional to its squared distance to the nearest seed so far, so seeds spread over
    the clusters instead of piling into the densest one. x [N, D] -> [k, D]."""
    n = x.shape[0]
    first = torch.randint(n, (1,), generator=generator, device=_device(generator))
    chosen = [first.to(x.device)]
    nearest = squared_distances(x, x[chosen[0]]).squeeze(-1).clamp(min=0)  # [N]
    for _ in range(k - 1):
        # All points already seeds (N < k): fall back to uniform draws, i.e. repeats.
        weights = nearest if nearest.sum() > 0 else torch.ones_like(nearest)
        nxt = torch.multinomial(weights.to(_device(generator)), 1, generator=generator).to(x.device)
        chosen.append(nxt)
        nearest = torch.minimum(nearest, squared_distances(x, x[nxt]).squeeze(-1).clamp(min=0))
    return x[torch.cat(chosen)].clone()


def _device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


@torch.no_grad()
def kmeans(x: Tensor, k: int, max_iters: int = 20, generator: torch.Generator | None = None) -> Tensor:
    """Cluster x [N, D] into k centroids [k, D].

    Starts from k-means++ seeds (repeats only when N < k). A cluster
    that ends up empty is re-seeded with the point farthest from its centroid, so
    every returned code sits on the data. Stops early once assignments settle.
    """
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"kmeans expects a non-empty [N, D] tensor, got {tuple(x.shape)}")
    x = x.float()
    centroids = kmeans_plus_plus(x, k, generator)  # [k, D]
    n = x.shape[0]
    assignment = torch.full((n,), -1, dtype=torch.long, device=x.device)
    for _ in range(max_iters):
        dist = squared_distances(x, centroids)  # [N, k]
        new_assignment = dist.argmin(-1)  # [N]
        counts = torch.bincount(new_assignment, minlength=k)  # [k]
        sums = torch.zeros_like(centroids).index_add_(0, new_assignment, x)  # [k, D]
        updated = sums / counts.clamp(min=1).unsqueeze(-1).to(x.dtype)
        centroids = torch.where((counts > 0).unsqueeze(-1), updated, centroids)
        empty = (counts == 0).nonzero().squeeze(-1)
        if empty.numel() > 0:
            # Re-seed empty clusters with the worst-served points: each one splits a crowded region.
            point_error = dist.gather(1, new_assignment.unsqueeze(-1)).squeeze(-1)  # [N]
            worst = point_error.topk(min(empty.numel(), n)).indices
            centroids[empty[: worst.numel()]] = x[worst]
        elif torch.equal(new_assignment, assignment):
            break
        assignment = new_assignment
    return centroids
