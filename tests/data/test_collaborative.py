import numpy as np
import pytest
import torch

from data.collaborative import collaborative_vectors, cooccurrence_pairs
from data.processed import ItemData
from runtime.errors import ConfigError
from tests.data.conftest import FAKE_DIM
from tests.fixtures import write_amazon_raw


def flat(sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    users = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    return users, np.concatenate([np.asarray(s) for s in sequences])


def test_pairs_are_training_targets_and_the_items_just_before_them():
    # user 0: 5 6 7 8 9 -> training targets 6 (position 1) and 7 (2); 8 is validation, 9 test
    # user 1: 1 2 3 4   -> training target 2 only
    users, items = flat([[5, 6, 7, 8, 9], [1, 2, 3, 4]])
    earlier, target = cooccurrence_pairs(users, items, window=2)
    assert sorted(zip(earlier.tolist(), target.tolist())) == [(1, 2), (5, 6), (5, 7), (6, 7)]
    earlier, target = cooccurrence_pairs(users, items, window=1)
    assert sorted(zip(earlier.tolist(), target.tolist())) == [(1, 2), (5, 6), (6, 7)]


def test_items_bought_together_get_close_vectors_and_held_out_targets_stay_out():
    # Two shops: items 0-9 are only ever bought with each other, 10-19 likewise. Item 20 is only
    # ever a validation or test target, so training never saw it next to anything.
    rng = np.random.default_rng(0)
    sequences = [list(rng.choice(10, 6, replace=False) + 10 * (u % 2)) + [20] + [int(rng.integers(20))]
                 for u in range(200)]
    users, items = flat(sequences)
    v = collaborative_vectors(users, items, n_items=21, dim=2, window=3)  # two factors for two shops
    assert v.shape == (21, 2)
    assert torch.allclose(v[:20].norm(dim=1), torch.ones(20), atol=1e-5)
    assert torch.equal(v[20], torch.zeros(2))  # no leak of held-out targets
    cosine = v[:20] @ v[:20].T
    same = torch.block_diag(torch.ones(10, 10), torch.ones(10, 10)).bool()
    assert cosine[same].min() > 0.99 and cosine[~same].abs().max() < 0.01
    assert torch.equal(v, collaborative_vectors(users, items, n_items=21, dim=2, window=3))  # deterministic
    with pytest.raises(ValueError, match="dim=21"):
        collaborative_vectors(users, items, n_items=21, dim=21)


def test_item_data_appends_the_weighted_collaborative_vectors(tmp_path, fake_encoder):
    root = write_amazon_raw(tmp_path / "r", n_users=30, n_items=40)
    kwargs = dict(root=str(root), cache_dir=str(tmp_path / "c"))
    text = ItemData(**kwargs)
    mixed = ItemData(**kwargs, collaborative_dim=5, collaborative_weight=0.5)
    assert mixed.feature_dim == FAKE_DIM + 5
    assert torch.equal(mixed.features[:, :FAKE_DIM], text.features)
    norms = mixed.features[:, FAKE_DIM:].norm(dim=1)
    assert torch.allclose(norms[norms > 0], torch.full_like(norms[norms > 0], 0.5), atol=1e-5)
    with pytest.raises(ConfigError, match="train.collaborative_dim = 40: must be below the 40 items"):
        ItemData(**kwargs, collaborative_dim=40)
