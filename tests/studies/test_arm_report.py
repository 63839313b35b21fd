import json

import pytest

from studies.arm_report import best_within, decide, main as arm_report


def comparisons(plain, skipped):
    """{split: [change per seed]} for both protocols -> decide()'s input, seeds 42, 43, ..."""
    return [{"seed": 42 + i, "split": split, "plain_change": p, "history_skipped_change": s}
            for split in plain for i, (p, s) in enumerate(zip(plain[split], skipped[split]))]


@pytest.mark.parametrize("plain, skipped, verdict", [
    ({"beauty": [0.04], "sports": [0.03]}, {"beauty": [0.0], "sports": [-0.01]}, "continue: run the other seeds"),
    ({"beauty": [0.04], "sports": [0.029]}, {"beauty": [0.0], "sports": [0.0]}, "stop: not adopted"),
    ({"beauty": [0.04], "sports": [0.05]}, {"beauty": [0.0], "sports": [-0.02]}, "stop: not adopted"),
    ({"beauty": [0.04, 0.05], "sports": [0.05, 0.01]}, {"beauty": [0, 0], "sports": [0, 0]}, "pending"),
    ({"beauty": [0.04, 0.05, 0.01], "sports": [0.05, 0.03, 0.02]}, {"beauty": [0] * 3, "sports": [0] * 3}, "adopt"),
    ({"beauty": [0.04, 0.05, 0.01], "sports": [0.12, -0.01, -0.01]}, {"beauty": [0] * 3, "sports": [0] * 3},
     "not adopted"),  # Sports' mean passes, but ahead on one seed of three
    ({"beauty": [0.04, 0.05, 0.04], "sports": [0.05, 0.03, 0.04]}, {"beauty": [0, 0, -0.04], "sports": [0] * 3},
     "not adopted"),  # Beauty's skipped mean -1.3%
])
def test_the_rules_decision(plain, skipped, verdict):
    assert decide(comparisons(plain, skipped), 0.03, -0.01)["verdict"] == verdict


def test_a_category_missing_leaves_the_decision_pending():
    assert decide(comparisons({"beauty": [0.1]}, {"beauty": [0.1]}), 0.03, -0.01)["verdict"] == "pending"


def curve(values):
    """[(step, plain NDCG@10, skipped NDCG@10)] -> curve.jsonl records."""
    return [{"step": s, "train_loss": 1.0, "wall_seconds": s / 10, "nll_level_0": 4.0,
             "plain": {"ndcg@10": p, "recall@10": 2 * p}, "history_skipped": {"ndcg@10": k, "recall@10": 2 * k}}
            for s, p, k in values]


def test_best_within_is_the_first_maximum_up_to_the_step():
    rows = curve([(2000, 0.01, 0.02), (4000, 0.03, 0.02), (6000, 0.03, 0.05), (8000, 0.09, 0.01)])
    assert best_within(rows, "plain", 6000) == {"step": 4000, "ndcg@10": 0.03, "recall@10": 0.06}
    assert best_within(rows, "history_skipped", 8000)["step"] == 6000
    with pytest.raises(SystemExit):
        best_within(rows, "plain", 1000)


def test_report_from_run_folders(tmp_path, capsys):
    values = {("arm", "beauty"): [(2000, 0.050, 0.060), (4000, 0.060, 0.061)],
              ("arm", "sports"): [(2000, 0.030, 0.030), (4000, 0.020, 0.020)],
              ("control", "beauty"): [(2000, 0.050, 0.060), (4000, 0.055, 0.061)],
              ("control", "sports"): [(2000, 0.025, 0.030), (4000, 0.026, 0.031)]}
    for (role, split), rows in values.items():
        run = tmp_path / role / f"amazon-{split}"
        run.mkdir(parents=True)
        (run / "curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curve(rows)))
    rule = tmp_path / "rule.txt"
    rule.write_text("the rule\n")
    for role in ("arm", "control"):  # evaluate.py --split test logs: their last JSON line is the result
        for split in ("beauty", "sports"):
            result = {"checkpoint_step": 4000, "beam_width": 30,
                      **{p: {m: {"recall@10": 0.1, "ndcg@10": 0.05 if role == "arm" else 0.04}
                             for m in ("tiger", "popularity", "transition")} for p in ("plain", "history_skipped")}}
            (tmp_path / f"test_{role}_{split}.log").write_text("progress\r...\n" + json.dumps(result) + "\n")
    out = tmp_path / "report.json"
    report = arm_report(["--arm", "x", "--rule", str(rule), "--seed", f"42:{tmp_path / 'arm'}:{tmp_path / 'control'}",
                         "--test", f"42:{tmp_path}/test_arm_{{split}}.log:{tmp_path}/test_control_{{split}}.log",
                         "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report)) and report["rule"] == "the rule\n"
    by_split = {c["split"]: c for c in report["comparisons"]}
    assert by_split["beauty"]["plain_change"] == pytest.approx(0.060 / 0.055 - 1)
    assert by_split["sports"]["plain_change"] == pytest.approx(0.030 / 0.026 - 1)
    assert by_split["sports"]["history_skipped_change"] == pytest.approx(0.030 / 0.031 - 1)  # -3.2%: the guard fails
    assert report["decision"]["verdict"] == "stop: not adopted"
    printed = capsys.readouterr().out
    assert "| Beauty plain | 0.0550 / 0.0600 (+9.1%) | +9.1% |" in printed and "**stop: not adopted**" in printed
    assert by_split["sports"]["test"]["arm"]["plain"]["tiger"]["ndcg@10"] == 0.05
    assert "| Sports seed 42 | history skipped | 0.1000 / 0.0400 | 0.1000 / 0.0500 | 0.1000 / 0.0500 |" in printed
