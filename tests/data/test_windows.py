import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from data.batching import ResidentWindows, n_targets, trim_history, window_batch
from data.splits import leave_one_out
from data.windows import TrainingWindows, cut_windows, gather_windows
from tests.fixtures import toy_train_split


def windows_of(lengths: list[int], max_seq_len: int, window_len: int):
    """A hand-made table: users with these many items, item id = row number. -> (items, windows as
    lists of (user, window items, trained positions)), via the train split, as TrainingWindows cuts it."""
    users = np.repeat(np.arange(len(lengths)), lengths)
    rows, _ = leave_one_out(users, max_seq_len)["train"]
    items = torch.arange(len(users))
    starts, lens, firsts = cut_windows(torch.from_numpy(rows), torch.from_numpy(users[rows]), max_seq_len, window_len)
    window, is_target = gather_windows(items, starts, lens, firsts, window_len)
    return [(int(users[s]), [int(x) for x in w if x >= 0], [int(x) for x in w[t]])
            for s, w, t in zip(starts, window, is_target)], rows


def test_a_hand_made_table():
    # user 0: 4 items (rows 0-3): one training target, row 1 (rows 2, 3: validation, test)
    # user 1: 12 items (rows 4-15): training targets rows 5..13; m = 3, windows of at most 5 items
    found, _ = windows_of([4, 12], max_seq_len=3, window_len=5)
    assert found == [
        (0, [0, 1], [1]),                  # the user's first window starts at the user's first item
        (1, [4, 5, 6, 7, 8], [5, 6, 7, 8]),
        (1, [6, 7, 8, 9, 10], [9, 10]),    # a later one: m = 3 items of context, then its targets
        (1, [8, 9, 10, 11, 12], [11, 12]),
        (1, [10, 11, 12, 13], [13]),       # ends at the last training target (14, 15 held out)
    ]


def test_users_with_fewer_than_four_items_have_no_window_and_short_users_one():
    found, _ = windows_of([3, 5, 3], max_seq_len=20, window_len=40)
    assert found == [(1, [3, 4, 5], [4, 5])]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(3, 40), min_size=1, max_size=12), st.integers(1, 8), st.integers(1, 10))
def test_every_target_once_with_its_full_history_and_nothing_after(lengths, max_seq_len, extra):
    window_len = max_seq_len + extra
    found, rows = windows_of(lengths, max_seq_len, window_len)
    first_row = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    trained = sorted(t for _, _, targets in found for t in targets)
    assert trained == sorted(rows.tolist())  # each training target exactly once per epoch
    for user, window, targets in found:
        assert len(window) <= window_len and window == list(range(window[0], window[0] + len(window)))
        assert window[-1] <= first_row[user] + lengths[user] - 3  # never a validation or test item
        assert targets == window[window.index(targets[0]):]  # trained: a run up to the window's end
        for t in targets:  # full history inside the window: min(position, m) items before t
            position = t - first_row[user]
            assert t - window[0] >= min(position, max_seq_len)


def test_cut_windows_refuses_what_it_cannot_cut():
    with pytest.raises(ValueError, match="exceed"):
        cut_windows(torch.tensor([1]), torch.tensor([0]), 3, 3)
    with pytest.raises(ValueError, match="consecutive"):
        cut_windows(torch.tensor([1, 3]), torch.tensor([0, 0]), 3, 6)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    train = toy_train_split(tmp_path_factory.mktemp("windows"), max_seq_len=3)
    sem_ids = torch.randint(0, 8, (40, 4), generator=torch.Generator().manual_seed(0))
    return train, sem_ids


def test_training_windows_replace_the_examples_of_a_split(toy):
    train, sem_ids = toy
    windows = TrainingWindows(train)  # window_len 2 * 3
    assert windows.window_len == 6 and int(windows.n_targets.sum()) == len(train) == windows.n_examples
    assert len(windows) < len(train)
    # each window's trained items are the split's targets, in order, with the split's users
    window, is_target = windows.items_batch(torch.arange(len(windows)))
    assert torch.equal(window[is_target], train.targets)
    assert torch.equal(torch.repeat_interleave(windows.user_ids, windows.n_targets), train.user_ids)


def test_window_batches_resident_or_not_and_trimmed(toy):
    train, sem_ids = toy
    windows = TrainingWindows(train)
    index = torch.tensor([3, 0, 7, 1])
    batch = window_batch(windows, index, sem_ids, torch.device("cpu"))
    assert batch["history"].shape == batch["target"].shape == (4, 6, 4)
    resident = ResidentWindows(windows, sem_ids, torch.device("cpu")).batch(index)
    for k in batch:
        assert torch.equal(batch[k], resident[k]), k
    window, is_target = windows.items_batch(index)
    assert torch.equal(batch["history"][window >= 0], sem_ids[window[window >= 0]])
    assert (batch["history"][window < 0] == -1).all()
    assert torch.equal(batch["target"][is_target], sem_ids[window[is_target]])
    assert (batch["target"][~is_target] == -1).all()
    assert int(n_targets(batch)) == int(windows.n_targets[index].sum())
    longest = int(windows.lengths[index].max())
    trimmed = trim_history(batch, longest)
    assert trimmed["history"].shape[1] == trimmed["target"].shape[1] == longest
    assert int(n_targets(trimmed)) == int(n_targets(batch))
