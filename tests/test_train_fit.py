import json

import pytest
import torch

import evaluate
import train_decoder
from modules.tokenizer import SemanticIdTokenizer
from studies.train_fit import main as train_fit, sample
from studies.transition_gap import pair_buckets
from tests.test_train_decoder import stage1, tiny_run_args  # noqa: F401 (pytest fixture)


def test_training_examples_are_bucketed_besides_themselves():
    # training examples (last -> target): 0->1 three times, 0->2 twice, 3->1 once
    last, targets = torch.tensor([0, 0, 0, 0, 0, 3]), torch.tensor([1, 1, 1, 2, 2, 1])
    buckets = pair_buckets(last, targets, last, targets, n_items=5, besides_itself=True)
    assert buckets["pair seen >= 2 times in training"].tolist() == [True, True, True, False, False, False]
    assert buckets["pair seen once"].tolist() == [False, False, False, True, True, False]
    assert buckets["pair unseen, last item has successors"].tolist() == [False] * 5 + [True]
    assert not buckets["last item never ends a training history"].any()  # a training example's item always does


def test_sample_is_a_fixed_sorted_choice_or_everything():
    mask = torch.tensor([True, False, True, True, True, False, True])
    assert sample(mask, None, torch.Generator()).tolist() == [0, 2, 3, 4, 6]
    picked = sample(mask, 3, torch.Generator().manual_seed(0))
    assert len(picked) == 3 and picked.tolist() == sorted(picked.tolist()) and set(picked.tolist()) <= {0, 2, 3, 4, 6}
    assert torch.equal(picked, sample(mask, 3, torch.Generator().manual_seed(0)))


def test_validation_rows_add_up_to_what_evaluate_reports(stage1, capsys, tmp_path):
    result = train_decoder.main(tiny_run_args(stage1, 20))
    valid = evaluate.main(tiny_run_args(stage1, 20, ["--split", "valid", "--beam-width", "12"]))
    capsys.readouterr()
    out = tmp_path / "fit.json"
    rows = train_fit(["--root", str(stage1 / "amazon"), "--cache-dir", str(stage1 / "cache"), "--sample", "0",
                      "--beam-width", "12", "--json", str(out),
                      "--run", f"tiny:{result['best_checkpoint']}:{stage1 / 'rqvae' / 'amazon-beauty' / 'semantic_ids.pt'}"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(rows))
    assert sum(r["valid_sampled"] for r in rows) == 30  # every validation user, each in one bucket
    n_train = sum(r["train_examples"] for r in rows)
    assert n_train == sum(r["train_sampled"] for r in rows) > 30
    for metric in ("ndcg@10", "recall@10"):  # the buckets' users weighted back together: evaluate.py's plain number
        total = sum(r["valid"][metric] * r["valid_sampled"] for r in rows if r["valid_sampled"]) / 30
        assert total == pytest.approx(valid["plain"]["tiger"][metric], abs=1e-6)
        floor = sum(r["transition_valid"][metric] * r["valid_sampled"] for r in rows if r["valid_sampled"]) / 30
        assert floor == pytest.approx(valid["plain"]["transition"][metric], abs=1e-6)
    assert all(0 <= r["train"]["ndcg@10"] <= r["train"]["recall@10"] <= 1 for r in rows if r["train_sampled"])
    with pytest.raises(SystemExit):
        train_fit(["--root", str(stage1 / "amazon"), "--cache-dir", str(stage1 / "cache"), "--run", "no-colons"])
    other = tmp_path / "other.pt"
    SemanticIdTokenizer.from_codes(torch.randint(0, 4, (40, 3), generator=torch.Generator().manual_seed(5)),
                                   codebook_size=8).save(other)
    with pytest.raises(SystemExit, match="was not trained with"):
        train_fit(["--root", str(stage1 / "amazon"), "--cache-dir", str(stage1 / "cache"),
                   "--run", f"tiny:{result['best_checkpoint']}:{other}"])
