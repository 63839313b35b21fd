import json
import sys

import pytest

from studies import sweep
from runtime.checkpointing import save_checkpoint
from tests.test_time_to_quality import DECODER, RQVAE, toy  # noqa: F401  (toy: the fixture data set)


def write(path, text):
    path.write_text(text)
    return path


def test_arms_file_names_bindings_and_comments(tmp_path):
    arms = sweep.parse_arms(write(tmp_path / "arms.txt", """# a comment line

base
lr.low   train.learning_rate=0.001   # a trailing comment
b_big    train.batch_size=4096 'train.hidden=(1, 2)'
"""))
    assert [(a.name, a.bindings, a.line) for a in arms] == [
        ("base", [], 3), ("lr.low", ["train.learning_rate=0.001"], 4),
        ("b_big", ["train.batch_size=4096", "train.hidden=(1, 2)"], 5)]


@pytest.mark.parametrize("line, message", [
    ("bad/name train.seed=1", "a name is letters"),
    ("a train.seed=1\na train.seed=2", "used twice"),
    ("a seed=1", "not a binding of the form"),
    ("a train.seed", "not a binding of the form"),
    ("a train.save_dir='x'", "bound by the sweep"),
    ("a train.device='cpu'", "bound by the sweep"),
    ("a 'train.seed=1", "No closing quotation"),
    ("# only comments", "no arms"),
])
def test_arms_file_errors_name_the_file_and_line(tmp_path, line, message):
    path = write(tmp_path / "arms.txt", line + "\n")
    with pytest.raises(SystemExit, match=message) as e:
        sweep.parse_arms(path)
    assert str(path) in str(e.value)


def test_unknown_or_mistyped_binding_stops_before_any_training(tmp_path, toy):  # noqa: F811
    root, cache, out = toy
    for bad, message in (("train.learning_rat=0.1", "learning_rat"), ("'train.iterations=\"many\"'", "iterations = 'many' has type str")):
        arms = write(tmp_path / "arms.txt", f"good train.seed=1\nbad {bad}\n")
        with pytest.raises(SystemExit, match=f"arm 'bad' \\(line 2\\).*{message}"):
            sweep.main(["--root", str(root), "--cache-dir", str(cache), "--out-dir", str(out), "--device", "cpu",
                        "--arms", str(arms), "--decoder-config", "configs/decoder_amazon_cpu.gin"])
        assert not out.exists()  # stage 1 never started


def test_committed_arms_file_binds_the_fast_config(monkeypatch):
    """gpu/gpu_sweep_arms.txt as gpu_check.sh runs it: every arm's bindings parse against its config."""
    arms = sweep.parse_arms("gpu/gpu_sweep_arms.txt")
    assert len(arms) >= 2
    sweep.check_arms(arms, "configs/decoder_amazon_fast.gin", [], [])  # SystemExit names the arm on a bad binding


def test_bar_steps():
    assert sweep.bar_steps("train:  40%|####      | 4800/12000 [00:20<00:30, 240it/s, loss=3.1]") == 4800
    assert sweep.bar_steps("no bar here") is None


def test_curve_prefers_curve_jsonl_then_final_json_then_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    logged = {2: {"wall_s": 5.0, "train_loss": 3.0}, 4: {"wall_s": 9.0, "train_loss": 2.5}}
    # Nothing written: no curve.
    assert sweep.read_curve(run, None, logged) == ([], "none (no validation reached)")
    # A stopped arm: the last checkpoint's history, wall seconds from the log lines.
    history = [{"step": 2, "recall@10": 0.1, "ndcg@10": 0.05}, {"step": 4, "recall@10": 0.2, "ndcg@10": 0.04}]
    save_checkpoint(run / "checkpoint.pt", {"history": json.dumps(history)}, step=4, bindings={})
    records, source = sweep.read_curve(run, None, logged)
    assert source.startswith("last checkpoint's history")
    assert records == [{**history[0], "wall_s": 5.0, "train_loss": 3.0}, {**history[1], "wall_s": 9.0, "train_loss": 2.5}]
    # A finished arm: its final JSON line's valid_history wins over the checkpoint.
    final = {"valid_history": history[:1]}
    records, source = sweep.read_curve(run, final, logged)
    assert source.startswith("final JSON line") and records == [{**history[0], "wall_s": 5.0, "train_loss": 3.0}]
    # curve.jsonl wins over both; its own wall_seconds over the log's, non-validation records skipped.
    lines = [{"step": 2, "wall_seconds": 4.5, "train_loss": 3.1, "recall@10": 0.1, "ndcg@10": 0.05, "nll_level_0": 1.0},
             {"step": 3, "wall_seconds": 6.0, "train_loss": 2.9},
             {"step": 4, "wall_seconds": 8.5, "recall@10": 0.3, "ndcg@10": 0.07}]
    write(run / "curve.jsonl", "".join(json.dumps(r) + "\n" for r in lines))
    records, source = sweep.read_curve(run, final, logged)
    assert source == "curve.jsonl"
    assert [(r["step"], r["wall_s"]) for r in records] == [(2, 4.5), (4, 8.5)]
    assert sweep.summarize(records) == {"best": {"step": 4, "wall_s": 8.5, "recall@10": 0.3, "ndcg@10": 0.07},
                                        "last": {"step": 4, "wall_s": 8.5, "recall@10": 0.3, "ndcg@10": 0.07}}
    table = sweep.markdown({"dataset": "d", "split": "s", "device_name": "cpu", "versions": {"torch": "t", "triton": None,
                            "cuda": None, "python": "3"}, "rqvae_config": "r", "decoder_config": "c", "arms_file": "a",
                            "gin": [], "decoder_gin": [], "stage1": None, "time_budget_s": 10,
                            "arms": [{"name": "x", "bindings": [], "status": "finished", "seconds": 1.0, "steps": 4,
                                      "curve_source": source, **sweep.summarize(records), "curve": records}]})
    assert "| x | (config) | finished | 4 | 1.0 | 0.0700 | 0.3000 | 4 | 8.5 | 0.0700 | 0.3000 |" in table
    assert "| step | wall_s | train_loss | recall@10 | ndcg@10 | nll_level_0 |" in table


def test_process_stops_at_budget_and_times_validation_lines(tmp_path):
    child = ("import sys, time\n"
             "sys.stderr.write('train:  50%|##  | 5/10 [00:01<00:01]\\r'); sys.stderr.flush()\n"
             "print('step 5: loss 2.5000 valid recall@10 0.1000 ndcg@10 0.0500', flush=True)\n"
             "time.sleep(60)\n")
    with open(tmp_path / "log", "w") as log:
        process = sweep.Process([sys.executable, "-c", child], log, env={})
        status = process.wait(budget_s=3)
    assert status == "stopped at budget" and process.seconds < 30
    assert process.validations[5]["train_loss"] == 2.5 and 0 < process.validations[5]["wall_s"] < 30
    assert sweep.bar_steps(process.last_bar) == 5
    assert "step 5: loss 2.5000" in (tmp_path / "log").read_text()


def test_toy_sweep_one_tokenizer_every_arm_reported(toy, tmp_path):  # noqa: F811
    root, cache, out = toy
    arms = write(tmp_path / "arms.txt", "too_big train.batch_size=100000   # more than the training examples\n"
                                        "wide train.batch_size=16 train.ff_dim=64 train.learning_rate=0.002 train.eval_every=4\n")
    varied = ("train.batch_size", "train.ff_dim", "train.eval_every")  # the arms' own: not bound for every arm
    result = sweep.main(["--root", str(root), "--cache-dir", str(cache), "--out-dir", str(out), "--device", "cpu",
                         "--arms", str(arms), "--rqvae-config", "configs/rqvae_amazon_cpu.gin",
                         "--decoder-config", "configs/decoder_amazon_cpu.gin", "--time-budget", "600",
                         *[a for b in RQVAE for a in ("--rqvae-gin", b)],
                         *[a for b in DECODER if b.split("=")[0] not in varied for a in ("--decoder-gin", b)]])
    assert json.loads((out / "sweep.json").read_text()) == json.loads(json.dumps(result))
    assert result["stage1"]["status"] == "finished" and result["versions"]["torch"]
    assert (out / "rqvae" / "amazon-beauty" / "semantic_ids.pt").is_file()  # one tokenizer for all arms
    too_big, wide = result["arms"]
    assert too_big["status"] == "failed (exit 2)" and too_big["curve"] == [] and too_big["best"] is None
    assert "error: train.batch_size = 100000 exceeds the" in (out / "sweep.log").read_text()  # a user error: exit 2, one line
    assert wide["status"] == "finished" and wide["steps"] == 12
    assert wide["settings"]["eval_every"] == 4 and wide["settings"]["iterations"] == 12
    assert wide["settings"]["learning_rate"] == 0.002 and wide["bindings"][1:] == ["train.ff_dim=64", "train.learning_rate=0.002", "train.eval_every=4"]
    assert [r["step"] for r in wide["curve"]] == [4, 8, 12] 
    assert wide["curve_source"] == "curve.jsonl" or wide["curve_source"].startswith("final JSON line")
    walls = [r["wall_s"] for r in wide["curve"]]
    assert walls == sorted(walls) and 0 < walls[-1] <= wide["seconds"]
    best = max(wide["curve"], key=lambda r: r["ndcg@10"])
    assert wide["best"]["ndcg@10"] == best["ndcg@10"] and wide["best"]["step"] == best["step"] and wide["last"]["step"] == 12
    table = (out / "sweep.md").read_text()
    assert table == sweep.markdown(result) and "| too_big |" in table and "## wide: validation curve" in table


def test_parallel_arms_share_the_time_in_waves(toy, tmp_path):  # noqa: F811
    """--parallel 2 with 2 arms: both start at once with the whole time left, each log line names its arm,
    the results keep the arms file's order, and the table says the arms ran side by side."""
    root, cache, out = toy
    arms = write(tmp_path / "arms.txt", "slow train.iterations=12 train.eval_every=4\nfast train.iterations=4 train.eval_every=4\n")
    result = sweep.main(["--root", str(root), "--cache-dir", str(cache), "--out-dir", str(out), "--device", "cpu",
                         "--arms", str(arms), "--rqvae-config", "configs/rqvae_amazon_cpu.gin",
                         "--decoder-config", "configs/decoder_amazon_cpu.gin", "--time-budget", "600", "--parallel", "2",
                         *[a for b in RQVAE for a in ("--rqvae-gin", b)],
                         *[a for b in DECODER if b.split("=")[0] not in ("train.iterations", "train.eval_every")
                           for a in ("--decoder-gin", b)]])
    slow, fast = result["arms"]
    assert (slow["name"], fast["name"]) == ("slow", "fast") and result["parallel"] == 2
    assert slow["status"] == fast["status"] == "finished" and (slow["steps"], fast["steps"]) == (12, 4)
    # Both started in the first wave: the time left after stage 1, undivided (one wave of 2).
    assert abs(slow["budget_s"] - fast["budget_s"]) < 5 and slow["budget_s"] > 300
    log = (out / "sweep.log").read_text()
    assert "[slow] step 12: loss" in log and "[fast] step 4: loss" in log
    assert "waves of 2 arms run side by side" in (out / "sweep.md").read_text()


def test_parallel_budget_waves():
    """The share an arm gets when it starts: the time left over the waves of N arms still to start."""
    shares = lambda n_arms, n: [sweep.arm_budget(1.0, n_arms - i, n) for i in range(n_arms)]
    assert shares(8, 4) == [0.5] * 4 + [1.0] * 4  # two waves: the first half the time, the second what is left
    assert shares(8, 8) == [1.0] * 8
    assert shares(3, 1) == [1 / 3, 1 / 2, 1.0]  # 1 at a time: equal shares of what is left
    assert shares(3, 2) == [0.5, 1.0, 1.0]  # N not dividing the arms: the second arm gets the whole time
