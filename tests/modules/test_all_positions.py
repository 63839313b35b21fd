"""The causal encoder-decoder of all-positions training (modules/model.py, causal_encoder=True): no target
sees its own or a later item, and one pass over a sequence gives every target the loss it gets per example."""
import pytest
import torch

from data.batching import sem_id_batch
from modules.beam_search import constrained_beam_search
from modules.model import EncoderDecoderRetrievalModel
from modules.semantic_id_trie import SemanticIdTrie
from tests.modules.test_beam_search import exhaustive_scores, random_catalogue

K, T, M = 5, 4, 4  # codebook size, tokens per ID, max_history


def causal_model(n_items: int = 0, constrained: bool = False, n_encoder_layers: int = 2) -> EncoderDecoderRetrievalModel:
    torch.manual_seed(0)
    model = EncoderDecoderRetrievalModel(
        n_levels=T, codebook_size=K, max_history=M, n_user_buckets=7, d_model=32, n_heads=2, d_head=16, ff_dim=64,
        n_encoder_layers=n_encoder_layers, n_decoder_layers=2, dropout=0.1, constrained_softmax=constrained,
        n_items=n_items, item_token_dropout=0.5, causal_encoder=True)
    with torch.no_grad():  # the distance biases start at zero: make them matter
        model.encoder_distance_bias.weight.normal_(0, 2.0)
        model.cross_distance_bias.weight.normal_(0, 2.0)
    return model.eval()


def catalogue_and_trie(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, SemanticIdTrie]:
    catalogue = random_catalogue(n, T, K, torch.Generator().manual_seed(seed))
    return catalogue, SemanticIdTrie(catalogue, K)


def all_positions(model, users, items, first_target, catalogue, trie=None):
    """items [B, W] item ids (-1 padded) of B sequences whose positions >= first_target are targets ->
    per-target NLL [B, W, T] of one all-positions pass (0 where no target)."""
    history = sem_id_batch({"user_id": users, "history": items, "target": items[:, 0]}, catalogue)["history"]
    is_target = (torch.arange(items.shape[1]) >= first_target) & (items >= 0)
    target = history.masked_fill(~is_target[..., None], -1)
    logits = model(users, history, target)
    assert logits.shape == (*target.shape, K)
    return model.level_nll(logits, target, trie.path_masks(target) if trie else None), target


def per_example(model, user, prefix, target_item, catalogue, trie=None):
    """NLL [T] of one example: the target after `prefix` (item ids), as per-example training sees it."""
    batch = sem_id_batch({"user_id": user[None], "history": prefix[None], "target": target_item[None]}, catalogue)
    logits = model(batch["user_ids"], batch["history"], batch["target"])
    return model.level_nll(logits, batch["target"], trie.path_masks(batch["target"]) if trie else None)[0]


@pytest.mark.parametrize("constrained,n_items", [(False, 0), (True, 40)])
def test_one_pass_gives_every_target_its_per_example_loss(constrained, n_items):
    catalogue, trie = catalogue_and_trie()
    model = causal_model(n_items, constrained)
    if model.item_emb is not None:
        model.item_emb.index(catalogue)
        with torch.no_grad():
            model.item_emb.emb.weight.normal_()
    g = torch.Generator().manual_seed(1)
    # three sequences of at most M + 1 items (every target's history within max_history), right-padded
    items = torch.randint(0, 40, (3, M + 1), generator=g)
    items[1, 3:] = -1
    items[2, 2:] = -1
    users = torch.tensor([0, 5, 9])
    nll, target = all_positions(model, users, items, 1, catalogue, trie if constrained else None)
    for b in range(3):
        for p in range(1, int((items[b] >= 0).sum())):
            expected = per_example(model, users[b], items[b, :p], items[b, p], catalogue, trie if constrained else None)
            torch.testing.assert_close(nll[b, p], expected, atol=1e-5, rtol=1e-5)
    assert (nll[target < 0] == 0).all() and (nll[target >= 0] >= 0).all() and nll.sum() > 0
    # the all-positions loss is the mean of the per-example losses it replaces
    logits = model(users, sem_id_batch({"user_id": users, "history": items, "target": items[:, 0]}, catalogue)["history"], target)
    per_target = nll.sum(-1)[target[..., 0] >= 0] / T
    torch.testing.assert_close(model.loss(logits, target, trie.path_masks(target) if constrained else None), per_target.mean())


def test_a_long_window_is_its_prefixes_read_per_example():
    # A window of 2M items whose targets start at M (data/windows.py's later windows): each target's loss is
    # the per-example loss of the window's prefix before it (the causal model reads histories of any length;
    # the cross-attention still sees only the last M items, the encoder's layers carry what came before).
    catalogue, _ = catalogue_and_trie()
    model = causal_model()
    items = torch.randint(0, 40, (1, 2 * M), generator=torch.Generator().manual_seed(2))
    users = torch.tensor([3])
    nll, _ = all_positions(model, users, items, M, catalogue)
    assert (nll[0, :M] == 0).all()
    for p in range(M, 2 * M):
        torch.testing.assert_close(nll[0, p], per_example(model, users[0], items[0, :p], items[0, p], catalogue),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_encoder_layers", [1, 2])
def test_no_target_sees_its_own_or_a_later_item(n_encoder_layers):
    catalogue, _ = catalogue_and_trie()
    model = causal_model(n_encoder_layers=n_encoder_layers)
    W = 2 * M + 1
    items = torch.randint(0, 40, (1, W), generator=torch.Generator().manual_seed(3))
    users = torch.tensor([1])
    history = sem_id_batch({"user_id": users, "history": items, "target": items[:, 0]}, catalogue)["history"]
    logits = model(users, history, history)  # every position a target
    for q in range(1, W):
        changed = history.clone()
        changed[0, q] = (changed[0, q] + 1 + torch.arange(T)) % K  # item q becomes another item
        other = model(users, changed, changed)
        # earlier targets: nothing changes; target q itself: not its first code's logits (the later ones
        # are teacher-forced on its own codes)
        torch.testing.assert_close(other[0, :q], logits[0, :q], atol=0, rtol=0)
        torch.testing.assert_close(other[0, q, 0], logits[0, q, 0], atol=0, rtol=0)
        if q + 1 < W:
            assert not torch.allclose(other[0, q + 1], logits[0, q + 1])  # the next target reads item q


def test_masks_see_exactly_the_prefix_within_max_history():
    model = causal_model()
    L = 7
    cross = model.cross_bias(torch.arange(L)[None], L, T)  # [1, H, L, S]
    seen = torch.isfinite(cross[0, 0])  # [L, S]
    item = torch.cat([torch.tensor([-1]), torch.arange(L).repeat_interleave(T)])  # memory item of each token
    for p in range(L):
        expected = (item < 0) | ((item < p) & (item >= p - M))
        assert torch.equal(seen[p], expected), p
    encoder = torch.isfinite(model.encoder_bias(L, T, torch.device("cpu"))[0, 0])  # [S, S]
    for s, i in enumerate(item.tolist()):
        expected = (item < 0) | ((item <= i) & (item > i - M)) if i >= 0 else item < 0
        assert torch.equal(encoder[s], expected), s
    # the bias is the learned value of each distance: target p reads item p - d with row d - 1
    torch.testing.assert_close(cross[0, :, 5, 1 + 3 * T], model.cross_distance_bias.weight[5 - 3 - 1])
    torch.testing.assert_close(cross[0, :, 5, 0], model.cross_distance_bias.weight[M])  # the user token


def test_wide_beam_search_is_the_exact_ranking_of_the_causal_model():
    catalogue, trie = catalogue_and_trie(30, seed=4)
    model = causal_model(constrained=True)
    for p in model.parameters():  # sharpen the random model so the ranking is far from uniform
        p.data.mul_(4.0)
    g = torch.Generator().manual_seed(5)
    history = torch.randint(0, 30, (5, M), generator=g)
    history[0, 1:] = -1
    history[3, 2:] = -1
    batch = sem_id_batch({"user_id": torch.arange(5), "history": history, "target": torch.zeros(5, dtype=torch.long)}, catalogue)
    out = constrained_beam_search(model, batch, trie, beam_width=30, top_k=10)
    expected_scores, expected_items = exhaustive_scores(model, batch, catalogue).topk(10, dim=1)
    assert torch.equal(out["item_ids"], expected_items)
    torch.testing.assert_close(out["scores"], expected_scores, atol=1e-4, rtol=1e-4)


def test_the_paper_model_refuses_all_positions_targets_and_keeps_its_kwargs():
    paper = EncoderDecoderRetrievalModel(n_levels=T, codebook_size=K, max_history=M, n_user_buckets=7, d_model=16,
                                         n_heads=2, d_head=8, ff_dim=32, n_encoder_layers=1, n_decoder_layers=1,
                                         dropout=0.1)
    assert "causal_encoder" not in paper.kwargs  # checkpoints written before the option still match
    assert causal_model().kwargs["causal_encoder"] is True
    history = torch.zeros(1, 3, T, dtype=torch.long)
    with pytest.raises(ValueError, match="causal_encoder"):
        paper(torch.tensor([0]), history, history)
