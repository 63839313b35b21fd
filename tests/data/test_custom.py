"""A user's own data set (data/custom.py): any id strings, texts or precomputed embeddings, clear errors."""
import os

import numpy as np
import polars as pl
import pytest
import torch

import data.item_embeddings as item_embeddings
import data.processed as processed
from data.custom import load_custom
from data.processed import ItemData, SeqData
from tests.data.conftest import FAKE_DIM

# user, item, timestamp in file order (not time order); 'u10' sorts before 'u2' (ids are strings)
ROWS = [
    ("u2", "007", 30), ("u2", "7", 10), ("u2", "b", 20), ("u2", "c", 20),   # tie at 20: file order (b, c)
    ("u10", "c", 5), ("u10", "007", 1), ("u10", "b", 3),
    ("solo", "b", 1), ("solo", "c", 2),                                      # 2 interactions: dropped
]
ITEMS = [("b", "Blue mug"), ("7", "Seven"), ("c", "Cup, large"), ("007", "Agent"), ("never", "Nobody bought me")]


def write(root, rows=ROWS, items=ITEMS, file_type="csv", interactions=None):
    root.mkdir(parents=True, exist_ok=True)
    table = interactions if interactions is not None else pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    catalogue = pl.DataFrame(items, schema=["item_id", "text"], orient="row")
    for name, t in (("interactions", table), ("items", catalogue)):
        t.write_csv(root / f"{name}.csv") if file_type == "csv" else t.write_parquet(root / f"{name}.parquet")
    return root


def sequences(raw):
    return raw.interactions.group_by("user", maintain_order=True).agg("item")["item"].to_list()


def test_texts_ids_and_time_order(tmp_path, capsys):
    raw = load_custom(write(tmp_path / "d"))
    # catalogue in file order: b=0, 7=1, c=2, 007=3, never=4 ('007' and '7' are different items)
    assert raw.n_items == 5 and raw.texts == [t for _, t in ITEMS]
    assert raw.titles[0] == "b: Blue mug" and raw.titles[4] == "never: Nobody bought me"
    assert raw.extra_features.shape == (5, 0)
    # users by id string: 'u10' (0) before 'u2' (1); each oldest first, ties in file order
    assert raw.n_users == 2
    assert sequences(raw) == [[3, 0, 2], [1, 0, 2, 3]]
    assert "dropped 1 of 3 users with fewer than 3 interactions (2 interactions)" in capsys.readouterr().err


def test_parquet_with_datetimes_and_integer_ids(tmp_path):
    table = pl.DataFrame({"user_id": [5, 5, 5, 6, 6, 6], "item_id": [1, 2, 3, 3, 2, 1],
                          "timestamp": ["2024-01-03", "2024-01-01", "2024-01-02T10:00:00", "2023-05-01", "2023-05-02", "2023-05-03"],
                          "rating": [1, 2, 3, 4, 5, 1]})  # extra columns are ignored
    table = table.with_columns(pl.col("timestamp").str.to_datetime())
    root = write(tmp_path / "d", items=[(1, "one"), (2, "two"), (3, "three")], file_type="parquet", interactions=table)
    raw = load_custom(root)
    assert sequences(raw) == [[1, 2, 0], [2, 1, 0]]
    # the same dates as CSV text parse the same way
    csv_root = tmp_path / "csv"
    csv_root.mkdir()
    table.with_columns(pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%S")).write_csv(csv_root / "interactions.csv")
    pl.DataFrame({"item_id": ["1", "2", "3"], "text": ["one", "two", "three"]}).write_csv(csv_root / "items.csv")
    assert sequences(load_custom(csv_root)) == [[1, 2, 0], [2, 1, 0]]


def test_precomputed_embeddings_are_the_features_and_nothing_is_embedded(tmp_path, fake_encoder):
    root = tmp_path / "d"
    write(root)
    os.remove(root / "items.csv")
    vectors = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    np.save(root / "item_embeddings.npy", vectors)
    pl.DataFrame({"item_id": [i for i, _ in ITEMS]}).write_csv(root / "item_ids.csv")
    calls = item_embeddings.ENCODE_CALLS
    items = ItemData(str(root), "custom", "shop", cache_dir=str(tmp_path / "cache"))
    assert item_embeddings.ENCODE_CALLS == calls and fake_encoder.loaded == []
    assert torch.equal(items.features, torch.from_numpy(vectors)) and items.feature_dim == 6
    assert items.titles[3] == "007"  # no text: the id is the title
    # an items table beside them only gives titles
    write(root)
    cached = ItemData(str(root), "custom", "shop", cache_dir=str(tmp_path / "cache"))  # files changed: rebuilt
    assert cached.titles[3] == "007: Agent" and torch.equal(cached.features, items.features)


def test_texts_are_embedded_and_leave_one_out_splits(tmp_path, fake_encoder):
    root = write(tmp_path / "d")
    items = ItemData(str(root), "custom", "shop", cache_dir=str(tmp_path / "cache"))
    assert items.feature_dim == FAKE_DIM
    assert torch.equal(items.features[2], fake_encoder.vector("Cup, large"))
    test = SeqData(str(root), "custom", "shop", "test", max_seq_len=2, cache_dir=str(tmp_path / "cache"))
    assert test.targets.tolist() == [2, 3] and test.history_batch(torch.arange(2)).tolist() == [[3, 0], [0, 2]]
    train = SeqData(str(root), "custom", "shop", "train", max_seq_len=2, cache_dir=str(tmp_path / "cache"))
    assert train.targets.tolist() == [0]  # only u2 has an item before its validation and test items
    assert (tmp_path / "cache" / "custom" / "shop" / "interactions.parquet").is_file()


def test_cache_is_reused_until_the_files_change(tmp_path, fake_encoder):
    root = write(tmp_path / "d")
    kwargs = dict(root=str(root), dataset="custom", split="shop", subset="test", cache_dir=str(tmp_path / "cache"))
    loads = processed.RAW_LOADS
    SeqData(**kwargs)
    SeqData(**kwargs)
    assert processed.RAW_LOADS == loads + 1
    write(root, rows=ROWS + [("u10", "never", 9)])  # the user's file changed: rebuilt, not the stale cache
    test = SeqData(**kwargs)
    assert processed.RAW_LOADS == loads + 2 and test.targets.tolist() == [4, 3]


@pytest.mark.parametrize("case,message", [
    ("missing_column", r"interactions\.csv: missing column\(s\) \['timestamp'\]; it has \['user_id', 'item_id', 'time'\]"),
    ("unknown_item", r"interactions\.csv:4: item_id 'zzz' is not in the catalogue \(1 interactions"),
    ("duplicate_item", r"items\.csv:3: item_id 'b' appears more than once"),
    ("bad_timestamp", r"interactions\.csv:3: timestamp 'yesterday' is neither a number nor a date"),
    ("empty_user", r"interactions\.csv:2: empty user_id"),
    ("no_catalogue", r"no item texts \(items\.parquet or items\.csv: item_id, text\)"),
    ("two_formats", r"both items\.parquet and items\.csv; keep one"),
    ("too_few", r"no user has 3 or more interactions"),
    ("embedding_rows", r"item_embeddings\.npy: expected a \[n_items, d\] numeric array with n_items = 5"),
    ("no_interactions", r"no interactions\.parquet or interactions\.csv"),
])
def test_clear_errors(tmp_path, case, message):
    root = write(tmp_path / "d")
    if case == "missing_column":
        pl.DataFrame(ROWS, schema=["user_id", "item_id", "time"], orient="row").write_csv(root / "interactions.csv")
    elif case == "unknown_item":
        write(root, rows=ROWS[:2] + [("u2", "zzz", 1)] + ROWS[2:])
    elif case == "duplicate_item":
        write(root, items=ITEMS[:1] + [("b", "again")] + ITEMS[1:])
    elif case == "bad_timestamp":
        write(root, rows=[(u, i, str(t)) for u, i, t in [ROWS[0], ("u2", "7", "yesterday")] + ROWS[2:]])
    elif case == "empty_user":
        write(root, rows=[(None, "007", 30)] + ROWS[1:])
    elif case == "no_catalogue":
        os.remove(root / "items.csv")
    elif case == "two_formats":
        pl.read_csv(root / "items.csv").write_parquet(root / "items.parquet")
    elif case == "too_few":
        write(root, rows=ROWS[-2:])
    elif case == "embedding_rows":
        np.save(root / "item_embeddings.npy", np.zeros((4, 3), np.float32))
        pl.DataFrame({"item_id": [i for i, _ in ITEMS]}).write_csv(root / "item_ids.csv")
    elif case == "no_interactions":
        os.remove(root / "interactions.csv")
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_custom(root)
