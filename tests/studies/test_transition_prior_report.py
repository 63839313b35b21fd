import json

import pytest

from studies.transition_prior_report import GRID, SEEDS, SPLITS, main


def grid_rows(gain_at: dict, skipped_gain: float = 0.0) -> list[dict]:
    """successor_prior.py's rows for both runs: NDCG@10 0.05 at W = 0, times (1 + gain) at W."""
    rows = [{"run": "transition floor", "plain": {"ndcg@10": 0.04}, "history_skipped": {"ndcg@10": 0.04}}]
    for run in ("recipe", "history_bias"):
        for w in (0.0, *GRID):
            g = 0.0 if w == 0 else gain_at.get(w, 0.0)
            rows.append({"run": run, "prior_weight": w, "plain": {"ndcg@10": 0.05 * (1 + g)},
                         "history_skipped": {"ndcg@10": 0.06 * (1 + (0 if w == 0 else skipped_gain))}})
    return rows


def write_out(tmp_path, gain_at, skipped_gain=0.0, tests=True):
    for seed in SEEDS:
        for split in SPLITS:
            (tmp_path / f"valid_s{seed}_{split}.json").write_text(json.dumps(grid_rows(gain_at, skipped_gain)))
            for arm in ("recipe", "bias"):
                for w in ("0", "1"):
                    if not tests:
                        continue
                    value = seed / 1000 + (0.01 if w == "1" else 0)
                    row = {m: value for m in ("recall@10", "ndcg@10")}
                    result = {p: {"tiger": row, "transition": row, "popularity": row} for p in ("plain", "history_skipped")}
                    (tmp_path / f"test_s{seed}_{split}_{arm}_w{w}.log").write_text(
                        "beam search ...\n" + json.dumps({**result, "checkpoint_step": 14000, "eval_seconds": 40}) + "\n")


def test_the_rule_picks_the_best_mean_weight_and_adopts_only_above_the_bar(tmp_path, capsys):
    write_out(tmp_path, {0.5: 0.02, 1.0: 0.10, 3.0: 0.05})
    report = main([str(tmp_path), "--json", str(tmp_path / "r.json")])
    assert report["decision"]["recipe"]["chosen_weight"] == 1.0 and report["decision"]["recipe"]["adopted"]
    assert report["decision"]["recipe"]["mean_plain_gain"][1.0] == pytest.approx(0.10)
    test = report["test"]["recipe_beauty_w1"]  # the chosen W's test; seeds 42-44 -> 0.052, 0.053, 0.054
    assert test["tiger"]["plain"]["ndcg@10"]["mean"] == pytest.approx(0.053)
    assert test["tiger"]["plain"]["ndcg@10"]["std"] == pytest.approx(0.001)
    assert "recipe: mean plain NDCG@10 gain" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["decision"]["recipe"]["adopted"]


def test_a_small_gain_or_a_skipped_loss_is_not_adopted(tmp_path):
    write_out(tmp_path, {1.0: 0.02}, tests=False)
    assert not main([str(tmp_path)])["decision"]["recipe"]["adopted"]   # +2% < the +3% bar
    write_out(tmp_path, {1.0: 0.10}, skipped_gain=-0.03, tests=False)
    report = main([str(tmp_path)])
    assert report["decision"]["recipe"]["chosen_weight"] == 1.0 and not report["decision"]["recipe"]["adopted"]
    assert report["test"] == {}  # no test logs: nothing read
