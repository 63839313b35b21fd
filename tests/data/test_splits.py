import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from data.splits import gather_histories, leave_one_out


def oracle(sequences, max_seq_len):
    """Leave-one-out written the slow, obvious way."""
    out = {"train": [], "valid": [], "test": []}
    for user, seq in enumerate(sequences):
        for p in range(1, len(seq)):
            subset = "test" if p == len(seq) - 1 else "valid" if p == len(seq) - 2 else "train"
            out[subset].append((user, seq[max(0, p - max_seq_len):p], seq[p]))
    return out


def split_with(sequences, max_seq_len):
    users = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    items = torch.tensor([i for s in sequences for i in s])
    result = {}
    for subset, (rows, lengths) in leave_one_out(users, max_seq_len).items():
        hist = gather_histories(items, torch.from_numpy(rows), torch.from_numpy(lengths), max_seq_len)
        result[subset] = [(int(users[r]), [int(x) for x in h[:n]], int(items[r]))
                          for r, h, n in zip(rows, hist, lengths)]
        assert (hist[torch.arange(max_seq_len) >= torch.from_numpy(lengths)[:, None]] == -1).all()
    return result


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 50), min_size=3, max_size=30), min_size=1, max_size=20),
       st.integers(1, 25))
def test_matches_the_obvious_implementation(sequences, max_seq_len):
    assert split_with(sequences, max_seq_len) == oracle(sequences, max_seq_len)


def test_split_boundaries():
    rng = np.random.default_rng(0)
    sequences = [list(rng.integers(0, 100, size=n)) for n in rng.integers(3, 40, size=50)]
    L = 7
    users = np.repeat(np.arange(50), [len(s) for s in sequences])
    starts = np.concatenate([[0], np.cumsum([len(s) for s in sequences])[:-1]])
    splits = leave_one_out(users, L)
    pos = {k: rows - starts[users[rows]] for k, (rows, _) in splits.items()}
    lengths = np.array([len(s) for s in sequences])
    # one validation and one test example per user, at the last two positions
    assert (pos["test"] == lengths - 1).all() and (pos["valid"] == lengths - 2).all()
    assert (users[splits["test"][0]] == np.arange(50)).all()
    # validation/test positions are never training targets; training targets start at position 1
    train_users, train_pos = users[splits["train"][0]], pos["train"]
    assert (train_pos >= 1).all() and (train_pos <= lengths[train_users] - 3).all()
    assert len(train_pos) == lengths.sum() - 3 * 50
    # the cap keeps the most recent items: history = the L rows right before the target
    assert (splits["train"][1] == np.minimum(train_pos, L)).all()


def test_history_holds_only_earlier_items_and_the_most_recent_ones():
    items = torch.arange(100, 110)  # one user, 10 items, distinct ids = positions + 100
    rows, lengths = leave_one_out(np.zeros(10, dtype=int), 3)["test"]
    hist = gather_histories(items, torch.from_numpy(rows), torch.from_numpy(lengths), 3)
    assert hist.tolist() == [[106, 107, 108]] and items[rows].tolist() == [109]
    rows, lengths = leave_one_out(np.zeros(10, dtype=int), 3)["train"]
    hist = gather_histories(items, torch.from_numpy(rows), torch.from_numpy(lengths), 3)
    assert hist[0].tolist() == [100, -1, -1] and hist[1].tolist() == [100, 101, -1]
    assert (hist.max(dim=1).values < items[rows]).all()  # strictly before the target


def test_bad_input():
    with pytest.raises(ValueError, match="fewer than 3"):
        leave_one_out(np.array([0, 0, 0, 1, 1]), 5)
    with pytest.raises(ValueError, match="grouped by user"):
        leave_one_out(np.array([0, 0, 0, 1, 1, 1, 0]), 5)
    with pytest.raises(ValueError, match="max_seq_len"):
        leave_one_out(np.array([0, 0, 0]), 0)
