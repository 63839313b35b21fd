"""bench/decoder_step.py times a decoder config's real step on synthetic histories (CPU, toy size)."""
import json

import pytest

from bench import decoder_step

TOY = ["--gin", "train.batch_size=8", "--gin", "train.max_seq_len=6", "--gin", "train.d_model=16", "--gin", "train.n_heads=2",
       "--gin", "train.d_head=8", "--gin", "train.ff_dim=32", "--gin", "train.num_threads=1"]


def test_whole_batch_and_micro_batches_do_the_same_work(tmp_path, capsys):
    rows = decoder_step.main(["configs/decoder_ml32m.gin", "--device", "cpu", "--steps", "1", "--micro-batch", "none,config,3",
                              "--json", str(tmp_path / "rows.json"), *TOY])
    assert [r["micro_batch_size"] for r in rows] == [None, 32, 3]  # "config": decoder_ml32m.gin's binding
    assert all(r["batch_size"] == 8 and r["history"] == 6 and r["seconds_per_step"] > 0 for r in rows)
    # FLOPs are per example: 8 at once, in one piece of 8 (32 > 8) or in pieces of 3, 3 and 2 count the same
    assert rows[1]["flops_per_step"] == rows[0]["flops_per_step"]
    assert rows[2]["flops_per_step"] == pytest.approx(rows[0]["flops_per_step"], rel=1e-9)
    assert rows[0]["tflops_per_second"] == pytest.approx(rows[0]["flops_per_step"] / rows[0]["seconds_per_step"] / 1e12)
    assert json.loads((tmp_path / "rows.json").read_text()) == rows
    table = capsys.readouterr().out
    assert table.count("\n| 8 | ") == 3 and "| 8 | whole | 6 |" in table and "| 8 | 3 | 6 |" in table


def test_synthetic_histories_are_full_length_catalogue_items():
    import torch

    catalogue = torch.randint(0, decoder_step.CODEBOOK_SIZE, (30, decoder_step.N_LEVELS))
    batch = decoder_step.synthetic_batch(catalogue, 5, 7, 10, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert batch["history"].shape == (5, 7, decoder_step.N_LEVELS) and batch["target"].shape == (5, decoder_step.N_LEVELS)
    items = {tuple(c) for c in catalogue.tolist()}
    assert all(tuple(c) in items for c in batch["history"].reshape(-1, decoder_step.N_LEVELS).tolist())  # no padding (-1)
    assert all(tuple(c) in items for c in batch["target"].tolist())


def test_item_tokens_are_timed_with_their_table(capsys):
    # decoder_amazon_cpu.gin trains with item tokens: the bench indexes the table on its synthetic catalogue.
    rows = decoder_step.main(["configs/decoder_amazon_cpu.gin", "--device", "cpu", "--steps", "1", *TOY])
    assert rows[0]["seconds_per_step"] > 0


def test_all_positions_configs_time_windows_and_count_their_targets(capsys):
    rows = decoder_step.main(["configs/decoder_ml32m_allpos.gin", "--device", "cpu", "--steps", "1",
                              "--micro-batch", "none,3", "--pass-targets", "4800", *TOY])
    assert all(r["all_positions"] and r["examples_per_step"] == 8 * 6 for r in rows)  # 8 windows of 12 items, 6 targets each
    assert rows[1]["flops_per_step"] == pytest.approx(rows[0]["flops_per_step"], rel=1e-9)
    # the hours: decoder_ml32m_allpos.gin's 5,000 steps, and 4,800 targets = 100 steps of 48 targets
    assert rows[0]["iterations"] == 5000
    assert rows[0]["run_hours"] == pytest.approx(rows[0]["seconds_per_step"] * 5000 / 3600)
    assert rows[0]["pass_hours"] == pytest.approx(rows[0]["seconds_per_step"] * 100 / 3600)
    table = capsys.readouterr().out
    assert "all-positions windows" in table and "| 5,000 steps | one pass (4,800 targets) |" in table


def test_real_batches_come_from_the_runs_stream_and_count_their_targets(tmp_path, capsys):
    # --data: the split's training batches as TrainingStream builds them (random codes, no tokenizer)
    from data.processed import SeqData
    from tests.fixtures import write_amazon_raw

    root = write_amazon_raw(tmp_path / "amazon", n_users=30, n_items=40)
    args = ["--device", "cpu", "--steps", "3", "--data", str(root), "--cache-dir", str(tmp_path / "cache"),
            *TOY[2:], "--gin", "train.batch_size=4"]
    per_example = decoder_step.main(["configs/decoder_amazon_cpu.gin", *args])[0]
    windows = decoder_step.main(["configs/decoder_amazon_cpu_allpos.gin", *args])[0]
    train = SeqData(str(root), "amazon", "beauty", "train", 6, str(tmp_path / "cache"))
    assert per_example["data"] == windows["data"] == "amazon/beauty"
    assert per_example["examples_per_step"] == 4  # 4 examples, one target each
    # 4 windows a step, each one user's training items (30 users of 6-12 items: several targets a window)
    assert 4 < windows["examples_per_step"] <= 4 * 12 and windows["all_positions"]
    assert per_example["pass_targets"] == windows["pass_targets"] == len(train)  # one pass: the split's targets
    assert windows["pass_hours"] == pytest.approx(len(train) / windows["examples_per_second"] / 3600)
    assert per_example["flops_per_step"] > 0 and windows["flops_per_step"] > 0
    assert "amazon/beauty's training batches as the run builds them" in capsys.readouterr().out
