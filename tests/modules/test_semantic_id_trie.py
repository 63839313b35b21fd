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


def test_blocked_codes_on_a_hand_built_trie():
    # items: 0 = (0,1,0), 1 = (0,1,1), 2 = (2,0,0), 3 = (0,2,0)
    trie = SemanticIdTrie(torch.tensor([[0, 1, 0], [0, 1, 1], [2, 0, 0], [0, 2, 0]]), codebook_size=3)
    root = torch.zeros(1, 1, dtype=torch.long)
    # excluding item 2 (the only item under code 2) blocks code 2 at the root; item 0 has a sibling
    blocked = trie.blocked(0, root, torch.tensor([[2, 0, -1]]))[0, 0]
    assert blocked.tolist() == [False, False, True]
    # items 0 and 1 are all of prefix (0,1): code 1 after (0) is blocked, code 2 (item 3) is not;
    # a repeated id counts once and -1 is padding
    node_0 = trie.next_nodes(0, torch.zeros(1, dtype=torch.long), torch.tensor([0]))
    assert trie.blocked(1, node_0.view(1, 1), torch.tensor([[1, 0, 0, -1]]))[0, 0].tolist() == [False, True, False]
    assert not trie.blocked(1, node_0.view(1, 1), torch.tensor([[1, 1, -1, -1]]))[0, 0].any()
    # rows are users: each is blocked by its own items only
    rows = trie.blocked(0, torch.zeros(2, 1, dtype=torch.long), torch.tensor([[2], [3]]))
    assert rows[:, 0].tolist() == [[False, False, True], [False, False, False]]


@pytest.mark.parametrize("seed", range(3))
def test_blocked_codes_match_brute_force(seed):
    ids = random_catalogue(40, 3, 3, seed)
    trie = SemanticIdTrie(ids, codebook_size=3)
    g = torch.Generator().manual_seed(seed)
    exclude = torch.randint(-1, len(ids), (6, 12), generator=g)  # [B, E] with padding and repeats
    n_blocked = 0
    for d in range(3):
        prefixes = torch.unique(ids[:, :d], dim=0) if d else ids[:1, :0]  # every node at depth d
        nodes = torch.zeros(len(prefixes), dtype=torch.long)
        for level in range(d):
            nodes = trie.next_nodes(level, nodes, prefixes[:, level])
        blocked = trie.blocked(d, nodes.expand(6, -1), exclude)  # [6, n_d, K]
        for b in range(6):
            gone = set(exclude[b][exclude[b] >= 0].tolist())
            for w, prefix in enumerate(prefixes):
                for code in range(3):
                    under = (ids[:, :d + 1] == torch.cat([prefix, torch.tensor([code])])).all(1).nonzero().flatten().tolist()
                    assert bool(blocked[b, w, code]) == (len(under) > 0 and set(under) <= gone)
        n_blocked += int(blocked.sum())
    assert n_blocked > 6 * 3  # more than the excluded items' last codes alone: whole prefixes get blocked too


def test_bad_catalogues_are_rejected():
    with pytest.raises(ValueError, match="share a semantic ID"):
        SemanticIdTrie(torch.tensor([[0, 1], [0, 1]]))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        SemanticIdTrie(torch.tensor([[0, 2]]), codebook_size=2)


@pytest.mark.parametrize("seed", range(3))
def test_mass_sums_the_weights_of_the_rows_items_under_each_code(seed):
    g = torch.Generator().manual_seed(seed)
    ids = random_catalogue(40, 3, 4, seed)
    trie = SemanticIdTrie(ids, codebook_size=4)
    items = torch.stack([torch.randperm(40, generator=g)[:6] for _ in range(2)])  # [2, 6] distinct per row
    items[1, 4:] = -1                                                              # padding
    weights = torch.randint(1, 5, (2, 6), generator=g).float()
    for d in range(3):
        prefixes = torch.unique(ids[:, :d], dim=0) if d else ids[:1, :0]          # [n_d, d]: every prefix
        nodes = torch.zeros(len(prefixes), dtype=torch.long)
        for level in range(d):
            nodes = trie.next_nodes(level, nodes, prefixes[:, level])
        out = trie.mass(d, nodes.expand(2, -1), items, weights)                    # [2, n_d, K]
        for b in range(2):
            for w, prefix in enumerate(prefixes):
                expected = torch.zeros(4)
                for e in range(6):
                    item = int(items[b, e])
                    if item >= 0 and torch.equal(ids[item, :d], prefix):
                        expected[ids[item, d]] += weights[b, e]
                assert torch.equal(out[b, w], expected)
