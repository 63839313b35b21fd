import json

import pytest

from runtime.errors import ConfigError

import evaluate
import train_decoder
from studies.successor_prior import main as successor_prior
from tests.test_train_decoder import stage1, tiny_run_args  # noqa: F401 (pytest fixture)


def test_weight_zero_is_what_evaluate_reports_and_the_floor_is_the_transition_baseline(stage1, capsys, tmp_path):
    result = train_decoder.main(tiny_run_args(stage1, 20))
    valid = evaluate.main(tiny_run_args(stage1, 20, ["--split", "valid", "--beam-width", "12"]))
    capsys.readouterr()
    out = tmp_path / "prior.json"
    rows = successor_prior(["--root", str(stage1 / "amazon"), "--cache-dir", str(stage1 / "cache"),
                            "--beam-width", "12", "--valid-max-users", "0", "--weights", "0", "3", "--json", str(out),
                            "--run", f"tiny:{result['best_checkpoint']}:"
                                     f"{stage1 / 'rqvae' / 'amazon-beauty' / 'semantic_ids.pt'}"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(rows))
    floor, own, weighted = rows
    for protocol in ("plain", "history_skipped"):
        for metric in ("ndcg@10", "recall@10"):
            assert floor[protocol][metric] == pytest.approx(valid[protocol]["transition"][metric], abs=1e-6)
            assert own[protocol][metric] == pytest.approx(valid[protocol]["tiger"][metric], abs=1e-6)
    assert (own["prior_weight"], weighted["prior_weight"]) == (0.0, 3.0) and own["users"] == 30
    with pytest.raises(SystemExit):
        successor_prior(["--root", str(stage1 / "amazon"), "--cache-dir", str(stage1 / "cache"), "--run", "x:y:z",
                         "--weights", "-1"])


def test_the_binding_searches_validation_and_evaluate_as_the_probe(stage1, capsys, tmp_path):
    prior = ["--gin", "train.eval_transition_prior=3.0"]
    result = train_decoder.main(tiny_run_args(stage1, 20, prior))
    curve = [json.loads(line) for line in open(tmp_path / "decoder" / "amazon-beauty" / "curve.jsonl")]
    valid = evaluate.main(tiny_run_args(stage1, 20, ["--split", "valid", "--beam-width", "12", *prior]))
    own = evaluate.main(tiny_run_args(stage1, 20, ["--split", "valid", "--beam-width", "12"]))  # the model alone
    capsys.readouterr()
    rows = successor_prior(["--root", str(stage1 / "amazon"), "--cache-dir", str(stage1 / "cache"),
                            "--beam-width", "12", "--valid-max-users", "0", "--weights", "0", "3",
                            "--run", f"tiny:{result['best_checkpoint']}:"
                                     f"{stage1 / 'rqvae' / 'amazon-beauty' / 'semantic_ids.pt'}"])
    assert valid["transition_prior"] == 3.0 and own["transition_prior"] == 0.0  # a config's 0 reads the old runs too
    for protocol in ("plain", "history_skipped"):
        for metric in ("ndcg@10", "recall@10"):
            assert valid[protocol]["tiger"][metric] == pytest.approx(rows[2][protocol][metric], abs=1e-6)
            assert own[protocol]["tiger"][metric] == pytest.approx(rows[1][protocol][metric], abs=1e-6)
    # validation in training searched with it too (its 10 beams): best.pt's curve row is evaluate.py's number
    at_best = evaluate.main(tiny_run_args(stage1, 20, ["--split", "valid", "--beam-width", "10", *prior]))
    capsys.readouterr()
    row = next(r for r in curve if r["step"] == result["best_step"])
    for protocol in ("plain", "history_skipped"):
        assert row[protocol]["ndcg@10"] == pytest.approx(at_best[protocol]["tiger"]["ndcg@10"], abs=1e-6)
    with pytest.raises(ConfigError, match="eval_transition_prior"):
        train_decoder.main(tiny_run_args(stage1, 20, ["--gin", "train.eval_transition_prior=-1.0"]))
