import json
import math
from collections import Counter

import pytest

import evaluate
import train_decoder
from data.processed import SeqData
from tests.test_train_decoder import stage1, tiny_run_args  # noqa: F401 (pytest fixture)


def test_evaluate_reports_exact_metrics_topk_file_and_one_user(stage1, capsys):
    skip = ["--gin", "train.eval_exclude_history=True"]  # selected on, and the top-level rows of, the skipping protocol
    trained = train_decoder.main(tiny_run_args(stage1, 20, skip))
    topk_file = stage1 / "topk.jsonl"
    args = tiny_run_args(stage1, 20, [*skip, "--split", "test", "--write-topk", str(topk_file), "--user", "3"])
    result = evaluate.main(args)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == json.loads(json.dumps(result))
    assert result["checkpoint"] == trained["best_checkpoint"] and result["checkpoint_step"] == trained["best_step"]
    assert result["users"] == 30 and result["tiger"]["invalid_id_share"] == 0.0

    # Recompute every metric from the written top-K lists: hit = the exact target item.
    records = [json.loads(line) for line in topk_file.read_text().splitlines()]
    assert len(records) == 30
    ranks = []
    for r in records:
        recs = [x["item_id"] for x in r["recommendations"]]
        assert len(recs) == 10 == len(set(recs))
        assert not set(recs) & {h["item_id"] for h in r["history"]}  # the config's eval_exclude_history
        ranks.append(recs.index(r["target"]["item_id"]) if r["target"]["item_id"] in recs else None)
    for k in (1, 5, 10):
        assert result["tiger"][f"recall@{k}"] == pytest.approx(sum(x is not None and x < k for x in ranks) / 30)
    for k in (5, 10):
        assert result["tiger"][f"ndcg@{k}"] == pytest.approx(
            sum(1 / math.log2(x + 2) for x in ranks if x is not None and x < k) / 30)
    all_recs = {x["item_id"] for r in records for x in r["recommendations"]}
    assert result["tiger"]["coverage@10"] == pytest.approx(len(all_recs) / 40)

    # Popularity floor, recomputed by counting the train split's targets; each list skips the user's history.
    train = SeqData(str(stage1 / "amazon"), "amazon", "beauty", "train", cache_dir=str(stage1 / "cache"))
    counts = Counter(train.targets.tolist())
    by_count = sorted(range(40), key=lambda i: (-counts[i], i))
    popular = [[i for i in by_count if i not in {h["item_id"] for h in r["history"]}][:10] for r in records]
    test_targets = [r["target"]["item_id"] for r in records]
    assert result["popularity"]["recall@10"] == pytest.approx(sum(t in p for t, p in zip(test_targets, popular)) / 30)
    assert result["popularity"]["recall@1"] == pytest.approx(sum(t == p[0] for t, p in zip(test_targets, popular)) / 30)

    # --user: that user's held-out test item and full history, with titles.
    user = result["user"]
    assert user["user_id"] == 3 and user == next(r for r in records if r["user_id"] == 3)
    test = SeqData(str(stage1 / "amazon"), "amazon", "beauty", "test", cache_dir=str(stage1 / "cache"))
    row = test.user_ids.tolist().index(3)
    assert user["target"]["item_id"] == int(test.targets[row])
    assert [h["item_id"] for h in user["history"]] == [i for i in test.histories[row].tolist() if i >= 0]
    assert all(isinstance(h["title"], str) for h in user["history"])


@pytest.mark.parametrize("extra", [[], ["--gin", "train.item_tokens=True"]], ids=["codes", "item_tokens"])
def test_validation_metrics_match_training_selection(stage1, capsys, extra):
    # item_tokens: evaluate.py finds each history item's row from the catalogue saved with the weights.
    trained = train_decoder.main(tiny_run_args(stage1, 20, extra))
    result = evaluate.main(tiny_run_args(stage1, 20, [*extra, "--split", "valid"]))
    for k in evaluate.REPORTED:
        assert result["tiger"][k] == pytest.approx(trained["best_valid"][k])


def test_both_protocols_are_reported_and_named(stage1, capsys):
    trained = train_decoder.main(tiny_run_args(stage1, 20))  # the paper's config: selected on the plain protocol
    assert trained["selected_on"] == "plain"
    assert all(h["protocol"] == "plain" and {"plain", "history_skipped"} <= set(h) for h in trained["valid_history"])
    result = evaluate.main(tiny_run_args(stage1, 20, ["--split", "test"]))
    table = capsys.readouterr().err
    assert "plain (the paper's protocol)" in table and "history skipped" in table
    # The top-level rows are the config's protocol, named.
    assert result["protocol"] == "plain"
    for name in ("tiger", "popularity", "transition"):
        assert result[name] == result["plain"][name]
    assert set(result["history_skipped"]) == {"tiger", "popularity", "transition"}
    assert result["history_skipped"]["tiger"]["invalid_id_share"] == 0.0
    # Read with the skipping protocol bound, the same best.pt reports that one at the top level.
    skipped = evaluate.main(tiny_run_args(stage1, 20, ["--split", "test", "--gin", "train.eval_exclude_history=True"]))
    assert skipped["protocol"] == "history_skipped" and skipped["tiger"] == result["history_skipped"]["tiger"]
