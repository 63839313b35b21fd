import math

import torch

from modules.embedding import ItemIdEmbedder


def test_an_item_gets_one_bucket_wherever_it_appears():
    embedder = ItemIdEmbedder(n_buckets=97, codebook_size=256, d_model=4)
    ids = torch.tensor([[3, 200, 17, 0], [3, 200, 17, 1], [255, 255, 255, 10]])  # [3 items, T]
    history = ids[torch.tensor([[0, 1, 2], [2, 0, 0]])]  # [B 2, L 3, T]
    buckets = embedder.buckets(history)  # [2, 3]
    assert buckets.shape == (2, 3)
    assert buckets[0, 0] == buckets[1, 1] == buckets[1, 2] and buckets[0, 2] == buckets[1, 0]
    assert ((buckets >= 0) & (buckets < 97)).all()


def test_distinct_ids_spread_like_random_buckets():
    # Fibonacci hashing of the ID read as one base-K number: IDs that differ in one late code (a shared
    # prefix, different collision tokens) must not pile into a few buckets.
    g = torch.Generator().manual_seed(0)
    prefixes = torch.randint(0, 256, (500, 3), generator=g)
    ids = torch.cat([prefixes.repeat_interleave(10, dim=0), torch.arange(10).repeat(500).unsqueeze(1)], dim=1)
    n_buckets = 1 << 16
    used = ItemIdEmbedder(n_buckets, 256, 4).buckets(ids).unique().numel()
    expected = n_buckets * (1 - math.exp(-len(ids) / n_buckets))  # birthday bound for uniform buckets: ~4,820
    assert used >= 0.98 * expected


def test_the_table_starts_at_zero_after_reset():
    embedder = ItemIdEmbedder(11, 8, 4)
    embedder.reset_parameters()
    assert torch.equal(embedder(torch.tensor([[1, 2, 3, 0]])), torch.zeros(1, 4))


def test_compiled_training_hashes_like_eager_evaluation():
    # With train.compile_model the training forward is compiled and beam search is not: the hash relies on
    # int64 multiplication wrapping around, which both must do alike or the two would read other buckets.
    embedder = ItemIdEmbedder(1 << 16, 256, 4)
    codes = torch.randint(0, 256, (512, 20, 4), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(torch.compile(embedder.buckets)(codes), embedder.buckets(codes), rtol=0, atol=0)
