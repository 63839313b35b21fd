import pytest
import torch

from modules.semantic_id_trie import SemanticIdTrie


def random_catalogue(n, T, K, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.unique(torch.randint(0, K, (n * 3, T), generator=g), dim=0)
    return ids[torch.randperm(len(ids), generator=g)[:n]]


@pytest.mark.parametrize("seed", range(3))
def test_allowed_tokens_match_brute_force(seed):
    ids = random_catalogue(40, 4, 3, seed)
    trie = SemanticIdTrie(ids, codebook_size=3)
    for item in range(len(ids)):
        node = torch.zeros(1, dtype=torch.long)
        for d in range(4):
            prefix = ids[item, :d]
            expected = torch.zeros(3, dtype=torch.bool)
            expected[ids[(ids[:, :d] == prefix).all(1), d]] = True
            assert torch.equal(trie.allowed(d, node)[0], expected)
            node = trie.next_nodes(d, node, ids[item, d:d + 1])
        assert node.item() == item  # the walk ends at the item id


def test_path_masks_are_the_allowed_codes_along_each_ids_own_prefix():
    ids = random_catalogue(30, 3, 4, seed=5)
    trie = SemanticIdTrie(ids, codebook_size=4)
    masks = trie.path_masks(ids)  # [30, 3, 4]
    for item in range(len(ids)):
        node = torch.zeros(1, dtype=torch.long)
        for d in range(3):
            assert torch.equal(masks[item, d], trie.allowed(d, node)[0])
            assert masks[item, d, ids[item, d]]  # the item's own code is always allowed
            node = trie.next_nodes(d, node, ids[item, d:d + 1])


def test_lookup_and_invalid_prefixes():
    ids = torch.tensor([[0, 1, 0], [0, 1, 1], [2, 0, 0]])
    trie = SemanticIdTrie(ids)
    assert trie.lookup(ids).tolist() == [0, 1, 2]
    assert trie.lookup(torch.tensor([[0, 2, 0], [2, 0, 1], [1, 1, 1]])).tolist() == [-1, -1, -1]
    dead = torch.tensor([-1])
    assert not trie.allowed(1, dead).any()
    assert trie.allowed(0, torch.zeros(1, dtype=torch.long))[0].tolist() == [True, False, True]


def test_bad_catalogues_are_rejected():
    with pytest.raises(ValueError, match="share a semantic ID"):
        SemanticIdTrie(torch.tensor([[0, 1], [0, 1]]))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        SemanticIdTrie(torch.tensor([[0, 2]]), codebook_size=2)
