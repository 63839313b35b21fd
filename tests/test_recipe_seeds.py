"""studies/recipe_seeds.py: runs read from their logs' last JSON lines, seeds summarised per recipe and split."""
import json
import statistics

import pytest

from studies import recipe_seeds


def write_run(log_dir, tag, seed, with_stage1=True):
    point = lambda r, n: {"recall@10": r, "ndcg@10": n}
    history = [{"step": s, "examples_seen": 256 * s, "wall_seconds": s / 10.0,
                "plain": point(0.01 * s / 1000, 0.005 * s / 1000), "history_skipped": point(0.012, 0.006)}
               for s in (1000, 2000)]
    decoder = {"best_step": 2000, "selected_on": "history_skipped", "steps": 2000, "train_seconds": 200.0 + seed,
               "steps_per_second": 10.0, "valid_history": history}
    rows = lambda t: {"tiger": point(t, t / 2), "popularity": point(0.01, 0.005), "transition": point(0.05, 0.03)}
    test = {"users": 100, "plain": rows(0.06 + seed / 1000), "history_skipped": rows(0.07 + seed / 1000)}
    (log_dir / f"{tag}.log").write_text("train: 100%\r\nstep 2000: ...\n" + json.dumps(decoder) + "\n"
                                        "\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03\n")
    (log_dir / f"{tag}_test.log").write_text("table\n" + json.dumps(test) + "\n")
    if with_stage1:
        stage1 = {"eval_reconstruction_loss": 0.9, "collision_share": 0.05, "largest_collision_group": 4,
                  "wall_time_s": 600.0, "step": 20000}
        (log_dir / f"rqvae_{tag}.log").write_text(json.dumps(stage1) + "\n")


def test_report_means_stds_and_rows_come_from_the_logs(tmp_path):
    for seed in (42, 43, 44):
        write_run(tmp_path, f"beauty_s{seed}", seed, with_stage1=seed != 42)
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    report = recipe_seeds.main([*(a for s in (42, 43, 44) for a in ("--run", f"allpos:beauty:{s}:{tmp_path}:beauty_s{s}")),
                                "--paper", "beauty=0.0648,0.0384", "--title", "t", "--machine", "m",
                                "--json", str(out_json), "--md", str(out_md)])
    assert json.loads(out_json.read_text()) == json.loads(json.dumps(report))
    (row,) = report["summary"]
    values = [0.06 + s / 1000 for s in (42, 43, 44)]
    assert row["plain"]["tiger"]["recall@10"]["mean"] == pytest.approx(statistics.fmean(values))
    assert row["plain"]["tiger"]["recall@10"]["std"] == pytest.approx(statistics.stdev(values))
    assert row["history_skipped"]["tiger"]["ndcg@10"]["mean"] == pytest.approx(statistics.fmean(v / 2 + 0.005 for v in values))
    assert row["plain"]["transition"]["ndcg@10"] == {"mean": pytest.approx(0.03), "std": pytest.approx(0.0)}
    first = report["runs"][0]
    assert "stage1" not in first and report["runs"][1]["stage1"]["collision_share"] == 0.05
    assert first["decoder_wall_s"] == 3723.0 and [h["step"] for h in first["curve"]] == [1000, 2000]
    md = out_md.read_text()
    assert "| allpos | beauty | 42, 43, 44 | 0.1030 ± 0.0010 |" in md
    assert "| the paper (TIGER, Table 1) | beauty | | 0.0648 | 0.0384 |" in md


def test_an_unfinished_run_is_named(tmp_path):
    write_run(tmp_path, "done", 42)
    (tmp_path / "done_test.log").write_text("still beam searching\n")
    with pytest.raises(SystemExit, match="done.log or done_test.log holds no result"):
        recipe_seeds.main(["--run", f"r:beauty:42:{tmp_path}:done", "--title", "t", "--machine", "m",
                           "--json", str(tmp_path / "r.json"), "--md", str(tmp_path / "r.md")])
