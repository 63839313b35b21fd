"""history_bias (modules/model.py): one learned logit per level for the codes after which every completion is an item
of the user's history (SemanticIdTrie.blocked), the same in teacher-forced training and in beam search."""
import pytest
import torch

from data.batching import sem_id_batch
from modules.beam_search import constrained_beam_search
from modules.model import EncoderDecoderRetrievalModel
from modules.semantic_id_trie import SemanticIdTrie
from tests.modules.test_beam_search import random_catalogue

K, T, L, N = 4, 3, 5, 30  # codes per level, levels, history length, items


def catalogue_and_trie() -> tuple[torch.Tensor, SemanticIdTrie]:
    catalogue = random_catalogue(N, T, K, torch.Generator().manual_seed(3))
    return catalogue, SemanticIdTrie(catalogue, K)


def model_with_bias(constrained: bool, bias: list[float] | None) -> EncoderDecoderRetrievalModel:
    torch.manual_seed(0)
    model = EncoderDecoderRetrievalModel(n_levels=T, codebook_size=K, max_history=L, n_user_buckets=3, d_model=32,
                                         n_heads=2, d_head=16, ff_dim=64, n_encoder_layers=1, n_decoder_layers=1,
                                         dropout=0.0, constrained_softmax=constrained, history_bias=bias is not None)
    if bias is not None:
        with torch.no_grad():
            model.history_bias.copy_(torch.tensor(bias))
    return model.eval()


def batch_of(catalogue: torch.Tensor, history: torch.Tensor) -> dict[str, torch.Tensor]:
    B = len(history)
    return sem_id_batch({"user_id": torch.arange(B) % 3, "history": history, "target": torch.zeros(B, dtype=torch.long)},
                        catalogue)


def histories() -> torch.Tensor:
    history = torch.randint(0, N, (4, L), generator=torch.Generator().manual_seed(5))
    history[1, 2:] = -1
    history[2, 1] = history[2, 0]  # an item twice
    return history


def test_path_blocked_marks_exactly_the_codes_whose_every_completion_is_excluded():
    catalogue, trie = catalogue_and_trie()
    exclude = histories()
    targets = catalogue[torch.tensor([0, 7, 12, 29])]
    blocked = trie.path_blocked(targets, exclude)  # [4, T, K]
    for b in range(4):
        excluded = {int(i) for i in exclude[b] if i >= 0}
        for d in range(T):
            prefix = targets[b, :d]
            for c in range(K):
                under = [i for i in range(N) if torch.equal(catalogue[i, :d], prefix) and catalogue[i, d] == c]
                expected = bool(under) and all(i in excluded for i in under)
                assert bool(blocked[b, d, c]) == expected, (b, d, c)
    assert blocked.any()  # the fixture has blocked codes to check
    assert torch.equal(trie.item_ids(batch_of(catalogue, exclude)["history"]), exclude)


def exhaustive_scores(model, batch, catalogue, trie):
    """log P(item | history) of every item by teacher forcing, with the model's history masks: [B, N]."""
    B = len(batch["user_ids"])
    targets = catalogue.repeat(B, 1)
    history = batch["history"].repeat_interleave(N, 0)
    with torch.no_grad():
        logits = model(batch["user_ids"].repeat_interleave(N), history, targets)
        nll = model.level_nll(logits, targets, trie.path_masks(targets), trie.path_blocked(targets, trie.item_ids(history)))
    return -nll.sum(-1).view(B, N)


@pytest.mark.parametrize("constrained", [False, True])
def test_wide_beam_search_is_the_teacher_forced_ranking_with_the_bias(constrained):
    catalogue, trie = catalogue_and_trie()
    model = model_with_bias(constrained, [-1.5, 2.0, -3.0])
    batch = batch_of(catalogue, histories())
    out = constrained_beam_search(model, batch, trie, beam_width=N, top_k=10)
    expected_scores, expected_items = exhaustive_scores(model, batch, catalogue, trie).topk(10, dim=1)
    assert torch.equal(out["item_ids"], expected_items)
    torch.testing.assert_close(out["scores"], expected_scores, atol=1e-4, rtol=1e-4)


def test_zero_bias_is_the_paper_model_and_a_strong_one_never_repeats_a_history_item():
    catalogue, trie = catalogue_and_trie()
    batch = batch_of(catalogue, histories())
    plain = model_with_bias(True, None)
    zero = model_with_bias(True, [0.0] * T)
    assert zero.kwargs == {**plain.kwargs, "history_bias": True} and "history_bias" not in plain.kwargs
    a = constrained_beam_search(plain, batch, trie, beam_width=8, top_k=8)
    b = constrained_beam_search(zero, batch, trie, beam_width=8, top_k=8)
    assert torch.equal(a["item_ids"], b["item_ids"])
    torch.testing.assert_close(a["scores"], b["scores"])
    assert (a["item_ids"][:, :, None] == histories()[:, None, :]).any()  # the plain model does repeat here
    strong = model_with_bias(True, [-1e4] * T)
    found = constrained_beam_search(strong, batch, trie, beam_width=8, top_k=8)["item_ids"]
    assert not (found[:, :, None] == histories()[:, None, :]).any()


def test_the_bias_gradient_is_the_blocked_codes_probability_minus_the_targets_share():
    catalogue, trie = catalogue_and_trie()
    model = model_with_bias(True, [0.3, -0.2, 0.1]).train()
    history = histories()
    batch = sem_id_batch({"user_id": torch.arange(4) % 3, "history": history, "target": torch.tensor([0, 7, 12, 29])},
                         catalogue)
    valid = trie.path_masks(batch["target"])
    blocked = trie.path_blocked(batch["target"], trie.item_ids(batch["history"]))
    logits = model(batch["user_ids"], batch["history"], batch["target"])
    model.loss(logits, batch["target"], valid, blocked).backward()
    # d mean CE / d b_t = mean over rows of (probability of the blocked codes - [target code blocked]) / T
    with torch.no_grad():
        biased = logits.float() + model.history_bias[:, None] * blocked
        p = biased.masked_fill(~valid, float("-inf")).softmax(-1)
        on_target = blocked.gather(-1, batch["target"][..., None])[..., 0].float()
        expected = ((p * blocked).sum(-1) - on_target).mean(0) / T
    assert blocked.any()
    torch.testing.assert_close(model.history_bias.grad, expected)
    with pytest.raises(ValueError, match="path_blocked"):
        model.level_nll(logits, batch["target"], valid)


def test_with_a_stop_gradient_the_model_learns_as_without_the_logit_and_the_logit_from_detached_scores():
    catalogue, trie = catalogue_and_trie()
    batch = sem_id_batch({"user_id": torch.arange(4) % 3, "history": histories(), "target": torch.tensor([0, 7, 12, 29])},
                         catalogue)
    valid = trie.path_masks(batch["target"])
    blocked = trie.path_blocked(batch["target"], trie.item_ids(batch["history"]))
    plain = model_with_bias(True, None).train()
    detached = model_with_bias(True, [0.3, -0.2, 0.1]).train()
    joint = model_with_bias(True, [0.3, -0.2, 0.1]).train()
    detached.history_bias_stop_gradient = True
    losses = {}
    for name, model in (("plain", plain), ("detached", detached), ("joint", joint)):
        logits = model(batch["user_ids"], batch["history"], batch["target"])
        losses[name] = model.loss(logits, batch["target"], valid, blocked if model.history_bias is not None else None)
        losses[name].backward()
    assert blocked.any()
    assert torch.equal(losses["detached"], losses["plain"])  # its value: the model's own cross-entropy
    weights = [n for n, _ in plain.named_parameters()]
    d, p, j = (dict(m.named_parameters()) for m in (detached, plain, joint))
    assert all(torch.equal(d[n].grad, p[n].grad) for n in weights)  # the recipe's gradient, to the bit
    assert not all(torch.equal(j[n].grad, p[n].grad) for n in weights)  # (the joint logit changes it)
    torch.testing.assert_close(detached.history_bias.grad, joint.history_bias.grad)  # the logit's is the joint one's


def test_a_stop_gradient_needs_the_logit():
    with pytest.raises(ValueError, match="history_bias_stop_gradient=True needs history_bias=True"):
        EncoderDecoderRetrievalModel(n_levels=T, codebook_size=K, max_history=L, n_user_buckets=3, d_model=32, n_heads=2,
                                     d_head=16, ff_dim=64, n_encoder_layers=1, n_decoder_layers=1, dropout=0.0,
                                     history_bias_stop_gradient=True)
