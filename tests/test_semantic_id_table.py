"""semantic_ids.csv: stage 1's item -> semantic ID table for a person, beside semantic_ids.pt, row for row the same."""
import csv
import json

import gin
import torch

import data.item_embeddings as item_embeddings
import train_rqvae
from modules.tokenizer import SemanticIdTokenizer
from tests.data.conftest import FakeSentenceTransformer
from tests.fixtures import write_amazon_raw
from tests.test_train_rqvae import CPU_CONFIG


def test_train_rqvae_writes_the_table_with_own_ids_titles_and_codes(tmp_path, monkeypatch, one_thread):
    monkeypatch.setattr(item_embeddings, "SentenceTransformer", FakeSentenceTransformer)  # no model weights needed
    root = write_amazon_raw(tmp_path / "amazon", n_users=30, n_items=40)
    gin.clear_config()
    result = train_rqvae.main([
        CPU_CONFIG, "--gin", f'train.dataset_folder="{root}"', "--gin", f'train.cache_dir="{tmp_path / "cache"}"',
        "--gin", f'train.save_dir="{tmp_path / "rqvae"}"', "--gin", "train.iterations=20",
        "--gin", "train.hidden_dims=(16,)", "--gin", "train.latent_dim=8", "--gin", "train.codebook_size=64",
        "--gin", "train.batch_size=16", "--gin", "train.held_out_fraction=0.1", "--gin", "train.collaborative_dim=0",
        "--gin", "train.eval_every=1000", "--gin", "train.checkpoint_every=1000", "--gin", "train.num_threads=1"])
    gin.clear_config()
    table = tmp_path / "rqvae" / "amazon-beauty" / "semantic_ids.csv"
    assert result["semantic_ids_table"] == str(table)
    sem_ids = SemanticIdTokenizer.load(result["semantic_ids"]).sem_ids
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["item", "item_id", "title", "code_1", "code_2", "code_3", "collision_token"]
    assert len(rows) == 40
    for item, row in enumerate(rows):
        assert int(row["item"]) == item and row["item_id"] == f"B{item + 1:09d}"  # the ASIN of P5 id item + 1
        codes = [int(row[f"code_{level}"]) for level in (1, 2, 3)] + [int(row["collision_token"])]
        assert codes == sem_ids[item].tolist()
    picture = table.parent / "semantic_id_clusters.png"  # and the clusters, for a person to look at
    assert result["semantic_id_clusters"] == str(picture) and picture.read_bytes()[:4] == b"\x89PNG"
    clusters = json.loads((table.parent / "semantic_id_clusters.json").read_text())
    assert clusters["items"] == 40 and clusters["max_collision_token"] == int(sem_ids[:, -1].max())
    assert clusters["prefixes"][0]["prefixes_used"] == len(set(sem_ids[:, 0].tolist()))
    titled = next(r for r in rows if r["item_id"] == "B000000003")  # the fixture's titles (item 7's is absent)
    assert titled["title"].startswith("product 3 ") and rows[6]["title"] == ""


def test_titles_with_commas_and_quotes_stay_one_field(tmp_path):
    tokenizer = SemanticIdTokenizer.from_codes(torch.tensor([[1, 2], [1, 2], [0, 3]]), 4)
    tokenizer.write_table(tmp_path / "t.csv", ["a", "b", "c"], ['Cup, "large"', "two\nlines", ""])
    with open(tmp_path / "t.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["item", "item_id", "title", "code_1", "code_2", "collision_token"],
                    ["0", "a", 'Cup, "large"', "1", "2", "0"], ["1", "b", "two\nlines", "1", "2", "1"],
                    ["2", "c", "", "0", "3", "0"]]
