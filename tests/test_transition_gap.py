import pytest
import torch

import evaluate
import train_decoder
from studies.transition_gap import main as transition_gap, pair_buckets, prefix_hits, read_topk
from tests.test_train_decoder import stage1, tiny_run_args  # noqa: F401 (pytest fixture)


def test_buckets_count_each_users_pair_among_the_training_examples():
    # training examples (last -> target): 0->1 twice, 0->2 once, 3->1 once; item 4 never ends a history
    train_last, train_targets = torch.tensor([0, 0, 0, 3]), torch.tensor([1, 1, 2, 1])
    last, targets = torch.tensor([0, 0, 0, 3, 4, 3]), torch.tensor([1, 2, 3, 2, 1, 1])
    buckets = pair_buckets(train_last, train_targets, last, targets, n_items=5)
    assert {k: v.tolist() for k, v in buckets.items()} == {
        "pair seen >= 2 times in training": [True, False, False, False, False, False],
        "pair seen once": [False, True, False, False, False, True],
        "pair unseen, last item has successors": [False, False, True, True, False, False],
        "last item never ends a training history": [False, False, False, False, True, False]}


def test_prefix_hits_find_a_listed_item_on_the_targets_branch_at_each_depth():
    sem_ids = torch.tensor([[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]])
    ranked = torch.tensor([[1, 2], [3, -1], [2, -1]])  # -1: a padded slot, never a hit (item -1 would read row 0's codes)
    targets = torch.tensor([0, 0, 3])
    assert prefix_hits(ranked, targets, sem_ids, 1).tolist() == [True, False, False]
    assert prefix_hits(ranked, targets, sem_ids, 2).tolist() == [True, False, False]
    assert prefix_hits(ranked, targets, sem_ids, 3).tolist() == [False, False, False]


def test_table_adds_up_to_what_evaluate_reports(stage1, capsys, tmp_path):
    train_decoder.main(tiny_run_args(stage1, 20))
    topk_file = tmp_path / "topk.jsonl"
    result = evaluate.main(tiny_run_args(stage1, 20, ["--split", "test", "--write-topk", str(topk_file)]))
    capsys.readouterr()
    transition_gap([str(topk_file), "--root", str(stage1 / "amazon"), "--cache-dir", str(stage1 / "cache"),
                    "--eval-split", "test", "--label", "tiny"])
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    assert sum(int(r[2].replace(",", "")) for r in rows[:-1]) == 30  # the buckets partition the users
    total = rows[-1]
    assert total[1] == "all" and int(total[2]) == 30
    ndcg, floor_ndcg, recall, floor_recall = (float(x.strip(" |")) for x in total[4:8])
    assert ndcg == pytest.approx(result["tiger"]["ndcg@10"], abs=1e-4)
    assert recall == pytest.approx(result["tiger"]["recall@10"], abs=1e-4)
    assert floor_ndcg == pytest.approx(result["transition"]["ndcg@10"], abs=1e-4)
    assert floor_recall == pytest.approx(result["transition"]["recall@10"], abs=1e-4)

    # the misses' table: in the "all" row as many users as Recall@10 leaves, each share a count of them
    transition_gap([str(topk_file), "--root", str(stage1 / "amazon"), "--cache-dir", str(stage1 / "cache"),
                    "--eval-split", "test", "--label", "tiny",
                    "--tokenizer", str(stage1 / "rqvae" / "amazon-beauty" / "semantic_ids.pt")])
    misses = capsys.readouterr().out.split("\n\n")[1].splitlines()[-1].split(" | ")
    missed = int(misses[2].split(" ")[0])
    assert misses[1] == "all" and missed == round(30 * (1 - recall))
    first, two, three = (float(x.strip(" |%")) / 100 for x in misses[3:6])
    assert 1 >= first >= two >= three >= 0
    assert all(abs(v * missed - round(v * missed)) < 0.02 for v in (first, two, three))  # printed to 0.1%

    with pytest.raises(SystemExit, match="topk.jsonl:1: not the --eval-split's user order"):
        read_topk(topk_file, torch.full((30,), -5))

