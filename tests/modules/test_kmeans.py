import pytest
import torch

from modules.kmeans import kmeans, squared_distances


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_squared_distances_match_cdist():
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(50, 7, generator=g), torch.randn(9, 7, generator=g)
    assert torch.allclose(squared_distances(x, c), torch.cdist(x, c).pow(2), atol=1e-4)


def test_kmeans_recovers_well_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(8, 4, generator=g) * 20
    labels = torch.arange(400) % 8
    x = centers[labels] + 0.1 * torch.randn(400, 4, generator=g)
    found = kmeans(x, 8, max_iters=50, generator=torch.Generator().manual_seed(1))
    # Every true centre has a centroid within noise range, and vice versa.
    dist = torch.cdist(centers, found)
    assert dist.min(1).values.max() < 0.5
    assert dist.min(0).values.max() < 0.5


def test_kmeans_lowers_quantisation_error_below_random_codebook():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 16, generator=g)
    random_points = x[torch.randperm(1000, generator=g)[:32]]
    found = kmeans(x, 32, max_iters=20, generator=torch.Generator().manual_seed(1))
    err_random = squared_distances(x, random_points).min(1).values.mean()
    err_kmeans = squared_distances(x, found).min(1).values.mean()
    assert err_kmeans < 0.9 * err_random


def test_kmeans_reseeds_empty_clusters_so_every_code_is_used():
    # 64 distinct points, 64 clusters, 60 of them packed near the origin: only re-seeding
    # empty clusters lets every point end up with its own centroid.
    x = torch.cat([torch.zeros(60, 2), torch.arange(4).float().unsqueeze(1).expand(4, 2) + 10])
    x = x + torch.linspace(0, 1, 64).unsqueeze(1) * torch.tensor([1.0, -1.0])  # all distinct
    found = kmeans(x, 64, max_iters=30, generator=torch.Generator().manual_seed(0))
    used = torch.unique(squared_distances(x, found).argmin(1))
    assert len(used) == 64


def test_kmeans_with_fewer_points_than_clusters_places_codes_on_points():
    x = torch.randn(5, 3)
    found = kmeans(x, 16, generator=torch.Generator().manual_seed(0))
    assert found.shape == (16, 3)
    assert squared_distances(found, x).min(1).values.max() < 1e-5
