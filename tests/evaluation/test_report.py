import torch

from data.batching import sem_id_batch
from evaluation.report import evaluate_split, floor_rows, validation_users
from evaluation.retrieval import baseline_topk, recommend, retrieval_metrics
from modules.model import EncoderDecoderRetrievalModel
from modules.semantic_id_trie import SemanticIdTrie


class Split:
    """A stand-in for SeqData: 6 users over 16 items, histories oldest first, -1 padded."""

    def __init__(self, histories: torch.Tensor, targets: torch.Tensor) -> None:
        self.histories, self.targets = histories, targets
        self.user_ids = torch.arange(len(targets))
        self.history_lengths = (histories >= 0).sum(dim=1)
        self.last_items = histories.gather(1, (self.history_lengths - 1)[:, None])[:, 0]
        self.n_items = 16

    def history_batch(self, index: torch.Tensor) -> torch.Tensor:
        return self.histories[index]

    def __len__(self) -> int:
        return len(self.targets)


def tiny_setup():
    torch.manual_seed(0)
    sem_ids = torch.tensor([[a, b, 0] for a in range(4) for b in range(4)])  # [16, 3]
    model = EncoderDecoderRetrievalModel(n_levels=3, codebook_size=4, max_history=3, n_user_buckets=5, d_model=16,
                                         n_heads=2, d_head=8, ff_dim=32, n_encoder_layers=1, n_decoder_layers=1,
                                         dropout=0.1).eval()
    histories = torch.tensor([[0, 1, 2], [3, -1, -1], [4, 5, -1], [6, 7, 0], [1, -1, -1], [12, 13, -1]])
    data = Split(histories, torch.tensor([3, 4, 6, 1, 2, 15]))
    train = Split(torch.tensor([[0, -1, -1], [1, -1, -1], [3, -1, -1]]), torch.tensor([1, 2, 4]))
    return model, data, train, sem_ids, SemanticIdTrie(sem_ids, codebook_size=4)


def test_each_protocol_is_its_own_beam_search_and_the_record_names_both():
    model, data, train, sem_ids, trie = tiny_setup()
    record = evaluate_split(model, data, sem_ids, trie, beam_width=10, batch_size=4, device=torch.device("cpu"),
                            train=train)
    assert record["users"] == 6 and set(record["found"]) == {"plain", "history_skipped"}
    for protocol, skip in (("plain", False), ("history_skipped", True)):
        alone = recommend(model, data, sem_ids, trie, 10, 10, 4, torch.device("cpu"), exclude_history=skip)
        assert torch.equal(record["found"][protocol]["item_ids"], alone["item_ids"])
        tiger = record[protocol]["tiger"]
        assert {k: tiger[k] for k in retrieval_metrics(alone["item_ids"], data.targets)} == \
            retrieval_metrics(alone["item_ids"], data.targets)
        floors = baseline_topk(train, data, 10, exclude_history=skip)
        assert record[protocol]["transition"]["recall@10"] == retrieval_metrics(floors["transition"], data.targets)["recall@10"]
    skipped = record["found"]["history_skipped"]["item_ids"]
    for row in range(6):  # never an item of the user's history; the plain search may rank them
        assert not set(skipped[row].tolist()) & set(data.histories[row][data.histories[row] >= 0].tolist())


def test_coverage_and_top1_share_count_the_ranked_lists():
    model, data, train, sem_ids, trie = tiny_setup()
    record = evaluate_split(model, data, sem_ids, trie, beam_width=10, batch_size=4, device=torch.device("cpu"),
                            protocols=("plain",), level_nll=True)
    ranked = record["found"]["plain"]["item_ids"]
    assert record["plain"]["tiger"]["coverage@10"] == len(set(ranked[ranked >= 0].tolist())) / 16
    top1 = ranked[:, 0].tolist()
    assert record["plain"]["tiger"]["top1_share"] == max(top1.count(i) for i in set(top1)) / 6
    assert "history_skipped" not in record and len([k for k in record if k.startswith("nll_level_")]) == 3
    # level NLL: the model's own teacher-forced loss per level, averaged over users
    batch = sem_id_batch({"user_id": data.user_ids, "history": data.histories, "target": data.targets}, sem_ids)
    logits = model(batch["user_ids"], batch["history"], batch["target"])
    nll = model.level_nll(logits, batch["target"], trie.path_masks(batch["target"])).mean(dim=0)
    assert torch.allclose(torch.tensor([record[f"nll_level_{t}"] for t in range(3)], dtype=torch.float64), nll.double(), atol=1e-6)


def test_floor_rows_of_a_subset_of_users():
    _, data, train, _, _ = tiny_setup()
    rows = floor_rows(train, data, torch.tensor([0, 2, 4]))
    assert set(rows) == {"plain", "history_skipped"} and set(rows["plain"]) == {"popularity", "transition"}
    assert rows["plain"]["popularity"]["coverage@10"] <= 1


def test_validation_users_are_all_or_a_fixed_even_spread():
    assert validation_users(5, None).tolist() == [0, 1, 2, 3, 4]
    assert validation_users(5, 9).tolist() == [0, 1, 2, 3, 4]
    assert validation_users(9, 3).tolist() == [0, 4, 8]
