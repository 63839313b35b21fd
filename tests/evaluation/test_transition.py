import torch

from evaluation.transition import successor_counts, transition_table, transition_topk


def test_successor_counts_then_popularity_back_off():
    # Training pairs (last -> next): 0->1 x2, 0->2 x1, 0->3 x1, 1->2 x1; 5 items.
    last = torch.tensor([0, 0, 0, 0, 1])
    nxt = torch.tensor([1, 1, 2, 3, 2])
    # popularity as targets: 1:2, 2:2, 3:1, then 0 and 4 never (ties broken by the smaller id)
    table = transition_table(last, nxt, n_items=5, k=4)
    assert table[0].tolist() == [1, 2, 3, 0]  # 1 (2x), then 2 and 3 (1x each; 2 is more popular), then back-off
    assert table[1].tolist() == [2, 1, 3, 0]  # its one successor, then the most popular others
    assert table[4].tolist() == [1, 2, 3, 0]  # never a previous item: popularity alone
    assert transition_topk(last, nxt, torch.tensor([1, 4]), n_items=5, k=2).tolist() == [[2, 1], [1, 2]]


def test_ties_in_count_go_to_the_more_popular_then_the_smaller_id():
    last = torch.tensor([0, 0, 0, 5, 5, 5])
    nxt = torch.tensor([4, 3, 2, 3, 3, 1])  # from 0: 2, 3, 4 once each; popularity 3:3, 1:1, 2:1, 4:1
    assert transition_table(last, nxt, n_items=6, k=3)[0].tolist() == [3, 2, 4]


def test_rows_hold_distinct_items_and_match_a_brute_force_ranking():
    g = torch.Generator().manual_seed(0)
    n, k = 30, 10
    last, nxt = torch.randint(0, n, (400,), generator=g), torch.randint(0, n, (400,), generator=g) ** 2 % n
    table = transition_table(last, nxt, n, k)
    pop = torch.bincount(nxt, minlength=n)
    for i in range(n):
        counts = torch.bincount(nxt[last == i], minlength=n)
        # score: successor count first, popularity second, smaller id third
        expected = sorted(range(n), key=lambda j: (-counts[j].item(), -pop[j].item(), j))[:k]
        assert table[i].tolist() == expected


def test_successor_counts_are_the_pairs_counted_most_frequent_first_without_back_off():
    last = torch.tensor([0, 0, 0, 0, 1, 0, 3])
    nxt = torch.tensor([3, 1, 1, 2, 2, 3, 3])  # from 0: 1 x2, 3 x2, 2 x1; from 1: 2; from 3: 3
    items, counts = successor_counts(last, nxt, n_items=5, k=2)
    assert items.tolist() == [[1, 3], [2, -1], [-1, -1], [3, -1], [-1, -1]]  # ties: the smaller id first
    assert counts.tolist() == [[2, 2], [1, 0], [0, 0], [1, 0], [0, 0]]
    items, counts = successor_counts(last, nxt, n_items=5, k=4)
    assert items[0].tolist() == [1, 3, 2, -1] and counts[0].tolist() == [2, 2, 1, 0]
    # the transition baseline's pairs: its row starts with the same successors (its ties: the more popular)
    assert sorted(transition_table(last, nxt, 5, 3)[0].tolist()) == [1, 2, 3]
