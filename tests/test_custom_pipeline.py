"""A custom data set (data/custom.py) through stage 1, stage 2 and evaluate.py, with the configs users start from."""
import json
from pathlib import Path

import gin
import polars as pl
import pytest

import evaluate
import train_decoder
import train_rqvae
from bench.make_movielens_standin import Size, make_standin
from serving import load_recommender
from tests.data.conftest import fake_encoder  # noqa: F401 (pytest fixture: no sentence-transformers weights needed)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def gin_args(*bindings: str) -> list[str]:
    return [a for b in bindings for a in ("--gin", b)]


def test_custom_data_set_through_both_stages_and_evaluate(tmp_path, fake_encoder, capsys):  # noqa: F811
    root = make_standin(tmp_path / "shop", Size(users=40, movies=60, ratings=1_200, max_movie_id=100), seed=4,
                        fmt="custom", file_type="parquet")
    data = (f'train.dataset_folder="{root}"', f'train.cache_dir="{tmp_path / "cache"}"', 'train.split="shop"',
            'train.device="cpu"', "train.num_threads=1")
    gin.clear_config()
    stage1 = train_rqvae.main(["configs/rqvae_custom.gin", *gin_args(
        *data, f'train.save_dir="{tmp_path / "rqvae"}"', "train.iterations=40", "train.hidden_dims=(32, 16)",
        "train.latent_dim=8", "train.codebook_size=16", "train.batch_size=32", "train.eval_every=20",
        "train.checkpoint_every=20", "train.held_out_fraction=0.1")])
    assert stage1["n_items"] == 60 and Path(stage1["semantic_ids"]) == tmp_path / "rqvae" / "custom-shop" / "semantic_ids.pt"

    decoder = (*data, f'train.tokenizer_dir="{tmp_path / "rqvae"}"', f'train.save_dir="{tmp_path / "decoder"}"',
               "train.iterations=20", "train.eval_every=10", "train.batch_size=32", "train.lr_constant_steps=5",
               "train.d_model=32", "train.n_heads=2", "train.d_head=16", "train.ff_dim=64", "train.n_encoder_layers=1",
               "train.n_decoder_layers=1", "train.eval_batch_size=16", "train.max_seq_len=12")
    gin.clear_config()
    stage2 = train_decoder.main(["configs/decoder_custom.gin", *gin_args(*decoder)])  # resident_data=True: flat store
    assert [h["step"] for h in stage2["valid_history"]] == [10, 20] and stage2["best_step"] in (10, 20)

    topk = tmp_path / "topk.jsonl"
    gin.clear_config()
    result = evaluate.main(["configs/decoder_custom.gin", *gin_args(*decoder), "--split", "test", "--write-topk", str(topk)])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["users"] == 40
    assert result["users"] == 40 and result["tiger"]["invalid_id_share"] == 0.0
    assert 0.0 <= result["tiger"]["recall@10"] <= 1.0 and "recall@10" in result["popularity"]
    records = [json.loads(line) for line in topk.read_text().splitlines()]
    items = pl.read_parquet(root / "items.parquet")
    titles = {f"{i}: {t}" for i, t in zip(items["item_id"], items["text"])}
    assert len(records) == 40 and all(len(r["recommendations"]) == 10 for r in records)
    assert all(x["title"] in titles for r in records for x in r["recommendations"] + [r["target"]])

    # serving/: your own string ids in and out, the same lists as evaluate.py's (titles are '<item_id>: <text>')
    rec = load_recommender(tmp_path / "decoder" / "custom-shop", device="cpu")
    answers = rec.recommend([[rec.item_ids[h["item_id"]] for h in r["history"]] for r in records],
                            user=[rec.user_ids[r["user_id"]] for r in records])
    for r, answer in zip(records, answers):
        assert [a.title for a in answer] == [x["title"] for x in r["recommendations"]]
        assert all(a.title.startswith(f"{a.item_id}: ") and isinstance(a.item_id, str) for a in answer)
    assert rec.user_ids == sorted(rec.user_ids) and set(rec.item_ids) == {str(i) for i in items["item_id"]}
