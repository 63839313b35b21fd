import json

import pytest
import torch

import evaluate
from studies import time_to_quality
from data.item_embeddings import cache_path
from data.item_text import TEXT_TEMPLATE
from data.processed import RecDataset, cache_folder, load_processed
from runtime.atomic_io import atomic_torch_save
from tests.fixtures import write_amazon_raw

# Toy stage 1 and 2 on the fixture data set, on top of the CPU configs.
RQVAE = ["train.hidden_dims=(32, 16)", "train.latent_dim=8", "train.codebook_size=16", "train.batch_size=16",
         "train.iterations=20", "train.eval_every=10", "train.checkpoint_every=20", "train.held_out_fraction=0.1",
         "train.kmeans_iters=2", "train.dead_code_window=5", "train.num_threads=1",
         "train.collaborative_dim=4"]  # the configs' 64 needs more than the toy's items
DECODER = ["train.iterations=12", "train.batch_size=16", "train.eval_every=6", "train.lr_constant_steps=4",
           "train.eval_batch_size=16", "train.d_model=16", "train.n_heads=2", "train.d_head=8", "train.ff_dim=32",
           "train.n_encoder_layers=1", "train.n_decoder_layers=1", "train.num_threads=1", "train.valid_max_users=None"]


@pytest.fixture
def toy(tmp_path):
    root = write_amazon_raw(tmp_path / "amazon", n_users=30, n_items=40)
    cache = tmp_path / "cache"
    # Random item vectors in the embedding cache: the stages read them as they would MiniLM's.
    raw = load_processed(root, RecDataset.AMAZON, "beauty", cache)
    path = cache_path(cache_folder(cache, RecDataset.AMAZON, "beauty"), raw.texts, None, TEXT_TEMPLATE)
    vectors = torch.randn(raw.n_items, 24, generator=torch.Generator().manual_seed(0))
    atomic_torch_save({"model": "test", "template": TEXT_TEMPLATE, "embeddings": vectors}, path)
    return root, cache, tmp_path / "ttq"


def test_toy_pipeline_times_and_metrics_are_consistent(toy, capsys):
    root, cache, out = toy
    argv = ["--root", str(root), "--cache-dir", str(cache), "--out-dir", str(out), "--device", "cpu",
            "--seeds", "1", "2", "--rqvae-config", "configs/rqvae_amazon_cpu.gin",
            "--decoder-config", "configs/decoder_amazon_cpu.gin",
            *[a for b in RQVAE for a in ("--rqvae-gin", b)], *[a for b in DECODER for a in ("--decoder-gin", b)]]
    result = time_to_quality.main(argv)
    printed = capsys.readouterr().out
    saved = json.loads((out / "time_to_quality.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert (out / "time_to_quality.md").read_text() in printed

    features = saved["features"]
    assert features["embeddings_cached"] and features["processed_cached"]  # the fixture wrote both caches
    assert features["n_items"] == 40 and features["feature_dim"] == 24
    assert features["examples"]["valid"] == features["examples"]["test"] == 30
    assert features["features_s"] == pytest.approx(features["parse_s"] + features["item_data_s"] + features["seq_data_s"])
    assert [r["seed"] for r in saved["runs"]] == [1, 2]
    for r in saved["runs"]:
        assert all(r[k] > 0 for k in time_to_quality.STAGES) and features["features_s"] > 0
        for split in ("valid", "test"):
            assert set(r[split]) == set(time_to_quality.METRICS)
            assert all(0.0 <= v <= 1.0 for v in r[split].values())
            assert r[split]["recall@5"] <= r[split]["recall@10"] and r[split]["ndcg@5"] <= r[split]["ndcg@10"]
            assert r[split]["ndcg@10"] <= r[split]["recall@10"]
        assert r["decoder_steps"] == 12 and r["best_step"] in (6, 12)
        # The test metrics are what evaluate.py reports for that seed's run, recomputed here.
        again = evaluate.main(r["argv"]["evaluate.py"])
        assert r["test"] == {k: again["tiger"][k] for k in time_to_quality.METRICS}
        assert r["protocol"] == again["protocol"] == "history_skipped"  # the laptop config selects on it
        for protocol in ("plain", "history_skipped"):
            assert r["test_by_protocol"][protocol] == {k: again[protocol]["tiger"][k] for k in time_to_quality.METRICS}
        # Validation metrics are the selected step's, from its own decoder run folder.
        best = torch.load(out / f"seed_{r['seed']}" / "decoder" / "amazon-beauty" / "best.pt", weights_only=True)
        assert best["manifest"]["step"] == r["best_step"]
        assert r["valid"] == {k: best["manifest"]["metrics"][k] for k in time_to_quality.METRICS}
    # Per-seed runs are separate: different seeds, different tokenizers.
    ids = [torch.load(out / f"seed_{s}" / "rqvae" / "amazon-beauty" / "semantic_ids.pt", weights_only=True) for s in (1, 2)]
    assert not torch.equal(ids[0]["sem_ids"], ids[1]["sem_ids"])

    mean = saved["mean"]
    for k in time_to_quality.STAGES:
        assert mean[k] == pytest.approx(sum(r[k] for r in saved["runs"]) / 2)
    for split in ("valid", "test"):
        for k in time_to_quality.METRICS:
            assert mean[split][k] == pytest.approx(sum(r[split][k] for r in saved["runs"]) / 2)
    for k in time_to_quality.METRICS:
        assert mean["test_by_protocol"]["plain"][k] == pytest.approx(
            sum(r["test_by_protocol"]["plain"][k] for r in saved["runs"]) / 2)
    mean_row = next(line for line in printed.splitlines() if line.startswith("| **mean of 2**"))
    assert mean_row.endswith(f"| {mean['test_by_protocol']['plain']['ndcg@10']:.4f} |")  # the plain test, last column
    assert mean["total_s"] == pytest.approx(features["features_s"] + sum(mean[k] for k in time_to_quality.STAGES))
    assert "**mean of 2**" in printed and saved["device"] == "cpu" and saved["device_name"].startswith("CPU")


def test_missing_config_is_named(toy):
    root, cache, out = toy
    with pytest.raises(SystemExit, match="no such file: configs/nope.gin"):
        time_to_quality.main(["--root", str(root), "--cache-dir", str(cache), "--out-dir", str(out), "--device", "cpu",
                              "--rqvae-config", "configs/nope.gin"])


def test_parallel_seeds_match_one_at_a_time(toy, capsys):
    """--parallel 2: each seed in its own process, same results as that seed run alone (CPU, one thread:
    deterministic), its log in its own file and on stderr, the table saying the seeds shared the device."""
    root, cache, out = toy
    common = ["--root", str(root), "--cache-dir", str(cache), "--device", "cpu",
              "--rqvae-config", "configs/rqvae_amazon_cpu.gin", "--decoder-config", "configs/decoder_amazon_cpu.gin",
              *[a for b in RQVAE for a in ("--rqvae-gin", b)], *[a for b in DECODER for a in ("--decoder-gin", b)]]
    together = time_to_quality.main([*common, "--out-dir", str(out), "--seeds", "1", "2", "--parallel", "2"])
    captured = capsys.readouterr()
    alone = time_to_quality.main([*common, "--out-dir", str(out.parent / "alone"), "--seeds", "2"])
    assert [r["seed"] for r in together["runs"]] == [1, 2] and together["parallel"] == 2
    assert together["runs"][1]["valid"] == alone["runs"][0]["valid"]
    assert together["runs"][1]["test"] == alone["runs"][0]["test"]
    assert together["runs"][0]["test"] != together["runs"][1]["test"] or together["runs"][0]["valid"] != together["runs"][1]["valid"]
    for seed in (1, 2):
        log = (out / f"seed_{seed}" / "log.txt").read_text()
        assert f"seed {seed}: stage 2 (train_decoder.py)" in log and "test split" in log
        assert f"=== seed {seed}: " in captured.err
    assert "\r" not in captured.err.split("=== seed")[1]  # progress-bar redraws reduced to their last state
    assert "Seeds ran 2 at a time" in (out / "time_to_quality.md").read_text()
    assert together["seeds_wall_s"] > 0 and alone["parallel"] == 1
    assert "at a time" not in time_to_quality.markdown(alone)


def test_a_failing_seed_in_parallel_is_named_with_its_log(toy):
    root, cache, out = toy
    # both seeds fail; whichever the machine finishes first is named, with its own log
    with pytest.raises(SystemExit, match=r"seed ([12]) failed \(train.batch_size = 100000 exceeds .*\): see .*seed_\1/log.txt"):
        time_to_quality.main(["--root", str(root), "--cache-dir", str(cache), "--out-dir", str(out), "--device", "cpu",
                              "--seeds", "1", "2", "--parallel", "2", "--rqvae-config", "configs/rqvae_amazon_cpu.gin",
                              "--decoder-config", "configs/decoder_amazon_cpu.gin",
                              *[a for b in RQVAE for a in ("--rqvae-gin", b)],
                              *[a for b in DECODER for a in ("--decoder-gin", b)], "--decoder-gin", "train.batch_size=100000"])
    assert "seed 1: stage 2 (train_decoder.py)" in (out / "seed_1" / "log.txt").read_text()


def test_parallel_and_seed_errors_are_named(toy):
    root, cache, out = toy
    base = ["--root", str(root), "--cache-dir", str(cache), "--out-dir", str(out), "--device", "cpu"]
    with pytest.raises(SystemExit, match="--parallel 0: expected 1 or more"):
        time_to_quality.main([*base, "--parallel", "0"])
    with pytest.raises(SystemExit, match="a seed is named twice"):
        time_to_quality.main([*base, "--seeds", "1", "1"])
