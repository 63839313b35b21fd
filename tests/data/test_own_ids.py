"""The data set's own ids (RawData.item_ids, user_ids) beside the 0-based numbers: what serving/ answers in.
Each reader's mapping, kept by the processed cache; a cache written before they were kept is rebuilt."""
import polars as pl
import pytest
import torch

import data.processed as processed
from data.processed import RecDataset, load_processed
from runtime.atomic_io import atomic_torch_save
from runtime.errors import CacheError
from tests.data.test_custom import write
from tests.fixtures import amazon_sequences, write_amazon_raw, write_ml1m_raw


def test_amazon_ids_are_asins_and_reviewer_ids_at_p5_id_minus_one(tmp_path):
    root = write_amazon_raw(tmp_path / "r", n_users=12, n_items=20, seed=3)
    for _ in range(2):  # from the raw files, then from the cache
        raw = load_processed(root, RecDataset.AMAZON, "beauty", tmp_path / "c")
        assert raw.item_ids == [f"B{i:09d}" for i in range(1, 21)]  # datamaps.json's id2item: P5 id i -> item i - 1
        assert raw.user_ids == [f"U{u:08d}" for u in range(1, 13)]
        first = raw.interactions.filter(pl.col("user") == 0)["item"].to_list()
        assert [raw.item_ids[i] for i in first] == [f"B{i:09d}" for i in amazon_sequences(12, 20, seed=3)[0]]


def test_movielens_ids_are_grouplens_ids_in_ascending_order(tmp_path):
    ratings = [(u, m, 4, 978300000 + m) for u in (7, 3, 11, 20, 15) for m in (50, 8, 23, 4, 61)]
    ratings += [(u, 99, 4, 978300000) for u in (7, 3)]  # movie 99: 2 ratings, filtered out (< 5)
    root = write_ml1m_raw(tmp_path / "r", n_movies=99, ratings=ratings)
    raw = load_processed(root, RecDataset.ML_1M, "ignored", tmp_path / "c")
    assert raw.item_ids == ["4", "8", "23", "50", "61"] and raw.user_ids == ["3", "7", "11", "15", "20"]
    user_7 = raw.interactions.filter(pl.col("user") == 1)["item"].to_list()  # oldest first: by timestamp = movie id
    assert [raw.item_ids[i] for i in user_7] == ["4", "8", "23", "50", "61"]
    assert raw.titles[raw.item_ids.index("23")] == "Movie 23, The (1973)"


def test_custom_ids_are_your_strings(tmp_path, capsys):
    raw = load_processed(write(tmp_path / "d"), RecDataset.CUSTOM, "shop", tmp_path / "c")
    assert raw.item_ids == ["b", "7", "c", "007", "never"]  # catalogue order
    assert raw.user_ids == ["u10", "u2"]  # ascending id strings; 'solo' (2 interactions) dropped
    assert [raw.item_ids[i] for i in raw.interactions.filter(pl.col("user") == 1)["item"].to_list()] == ["7", "b", "c", "007"]


def test_a_cache_from_before_the_ids_is_rebuilt_with_a_note(tmp_path, capsys):
    root = write_amazon_raw(tmp_path / "r", n_users=12, n_items=20)
    load_processed(root, RecDataset.AMAZON, "beauty", tmp_path / "c")
    items_path = tmp_path / "c" / "amazon" / "beauty" / "items.pt"
    old = torch.load(items_path, weights_only=True)
    atomic_torch_save({k: v for k, v in old.items() if k not in ("item_ids", "user_ids")} | {"version": 1}, items_path)
    loads = processed.RAW_LOADS
    raw = load_processed(root, RecDataset.AMAZON, "beauty", tmp_path / "c")
    assert processed.RAW_LOADS == loads + 1 and raw.item_ids[0] == "B000000001"
    assert "written by cache version 1, this code reads version 2: rebuilding it" in capsys.readouterr().err
    assert torch.load(items_path, weights_only=True)["version"] == processed.CACHE_VERSION == 2


def test_an_edited_id_in_the_cache_is_refused(tmp_path):
    root = write_amazon_raw(tmp_path / "r", n_users=12, n_items=20)
    load_processed(root, RecDataset.AMAZON, "beauty", tmp_path / "c")
    items_path = tmp_path / "c" / "amazon" / "beauty" / "items.pt"
    items = torch.load(items_path, weights_only=True)
    items["item_ids"][3] = "B000000005"  # unpickles fine: only the recorded SHA-256 of the content tells
    atomic_torch_save(items, items_path)
    with pytest.raises(CacheError, match=f"{items_path} does not match the SHA-256 of its content.*force-process"):
        load_processed(root, RecDataset.AMAZON, "beauty", tmp_path / "c")
