import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from modules.beam_search import constrained_beam_search
from evaluation.metrics import TopKMetrics
from data.batching import sem_id_batch
from modules.model import EncoderDecoderRetrievalModel
from modules.semantic_id_trie import SemanticIdTrie


class RandomLogitsModel(nn.Module):
    """Stands in for the model: logits are a fixed random table indexed by
    (user, decoder position, previous token), so they are arbitrary but consistent
    across beams. The user of each beam row travels in the cache, as real keys/values do."""

    def __init__(self, n_users, T, K, scale, seed, constrained_softmax=False):
        super().__init__()
        self.constrained_softmax = constrained_softmax
        g = torch.Generator().manual_seed(seed)
        self.n_levels, self.codebook_size = T, K
        self.table = scale * torch.randn(n_users, T, T * K + 2, K, generator=g)
        self.sem_id_emb = type("E", (), {"bos_token": T * K + 1, "tokens": staticmethod(lambda c, l: l * K + c)})

    def encode(self, user_ids, history):
        return user_ids[:, None, None].float(), torch.zeros(len(user_ids), 1, dtype=torch.bool)

    def new_cache(self):
        return [{"fake": {}}]

    def decode(self, tokens, memory, padding, cache, start):
        if start == 0:
            cache[0]["fake"]["user"] = memory[:, 0, 0].long()
        return self.table[cache[0]["fake"]["user"], start, tokens[:, -1]][:, None]


def random_catalogue(n, T, K, g):
    ids = torch.unique(torch.randint(0, K, (4 * n, T), generator=g), dim=0)
    return ids[torch.randperm(len(ids), generator=g)[:n]]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_items=st.integers(1, 40), K=st.integers(2, 6), T=st.integers(1, 4),
       beam=st.integers(1, 12), scale=st.sampled_from([0.1, 3.0, 50.0]), constrained=st.booleans())
def test_beam_search_never_returns_an_invalid_id(seed, n_items, K, T, beam, scale, constrained):
    g = torch.Generator().manual_seed(seed)
    catalogue = random_catalogue(n_items, T, K, g)
    trie = SemanticIdTrie(catalogue, codebook_size=K)
    n_users, top_k = 5, max(1, beam // 2)
    model = RandomLogitsModel(n_users, T, K, scale, seed, constrained)
    batch = {"user_ids": torch.arange(n_users), "history": torch.zeros(n_users, 1, T, dtype=torch.long)}
    out = constrained_beam_search(model, batch, trie, beam_width=beam, top_k=top_k)
    items, sem, scores = out["item_ids"], out["sem_ids"], out["scores"]
    valid = items >= 0
    # Every returned ID is a catalogue item's full ID, and the item id is that item.
    assert torch.equal(sem[valid], catalogue[items[valid]])
    assert torch.equal(trie.lookup(sem[valid]), items[valid])
    # Masking before the top-k: the beam is never wasted on invalid tokens, so it finds
    # min(top_k, catalogue size) distinct items for every user.
    assert (valid.sum(1) == min(top_k, len(catalogue))).all()
    assert torch.isfinite(scores[valid]).all() and (scores[~valid] == float("-inf")).all()
    for u in range(n_users):
        assert len(set(items[u][valid[u]].tolist())) == int(valid[u].sum())
    assert (scores[:, 1:] <= scores[:, :-1]).all()


def exhaustive_scores(model, batch, catalogue):
    """log P(item | history) of every item by teacher forcing (the model's own softmax, through
    model.level_nll): [B, N]."""
    B, N = batch["user_ids"].shape[0], catalogue.shape[0]
    targets = catalogue.repeat(B, 1)
    with torch.no_grad():
        logits = model(batch["user_ids"].repeat_interleave(N), batch["history"].repeat_interleave(N, 0), targets)
        nll = model.level_nll(logits, targets, SemanticIdTrie(catalogue, model.codebook_size).path_masks(targets))
    return -nll.sum(-1).view(B, N)


def small_model(K, T, L, constrained_softmax=False):
    torch.manual_seed(0)
    return EncoderDecoderRetrievalModel(n_levels=T, codebook_size=K, max_history=L, n_user_buckets=11, d_model=32,
                                        n_heads=2, d_head=16, ff_dim=64, n_encoder_layers=2, n_decoder_layers=2, dropout=0.0,
                                        constrained_softmax=constrained_softmax)


@pytest.mark.parametrize("constrained", [False, True])
def test_wide_beam_equals_exhaustive_teacher_forced_ranking(constrained):
    g = torch.Generator().manual_seed(0)
    K, T, L = 4, 4, 3
    catalogue = random_catalogue(30, T, K, g)
    model = small_model(K, T, L, constrained)
    for p in model.parameters():  # sharpen the random model so the ranking is far from uniform
        p.data.mul_(8.0)
    model.eval()
    history = torch.randint(0, 30, (6, L), generator=g)
    history[0, 1:] = -1
    batch = sem_id_batch({"user_id": torch.arange(6), "history": history, "target": torch.zeros(6, dtype=torch.long)}, catalogue)
    out = constrained_beam_search(model, batch, SemanticIdTrie(catalogue, K), beam_width=30, top_k=10)
    expected_scores, expected_items = exhaustive_scores(model, batch, catalogue).topk(10, dim=1)
    assert torch.equal(out["item_ids"], expected_items)
    torch.testing.assert_close(out["scores"], expected_scores, atol=1e-4, rtol=1e-4)
    again = constrained_beam_search(model, batch, SemanticIdTrie(catalogue, K), beam_width=30, top_k=10)
    assert torch.equal(again["item_ids"], out["item_ids"])  # deterministic


@pytest.mark.parametrize("constrained", [False, True])
def test_excluded_items_leave_the_ranking_of_the_others_unchanged(constrained):
    g = torch.Generator().manual_seed(1)
    K, T, L = 8, 3, 5
    # distinct two-code prefixes, then one more code: as with a collision token, most prefixes one item deep
    catalogue = torch.cat([random_catalogue(30, 2, K, g), torch.randint(0, K, (30, 1), generator=g)], dim=1)
    model = small_model(K, T, L, constrained)
    for p in model.parameters():
        p.data.mul_(8.0)
    model.eval()
    history = torch.randint(0, 30, (6, L), generator=g)
    history[0, 2:] = -1
    batch = sem_id_batch({"user_id": torch.arange(6), "history": history, "target": torch.zeros(6, dtype=torch.long)}, catalogue)
    trie = SemanticIdTrie(catalogue, K)
    scores = exhaustive_scores(model, batch, catalogue)  # [6, 30]
    plain = constrained_beam_search(model, batch, trie, beam_width=30, top_k=10)
    exclude = torch.cat([plain["item_ids"][:, :3], history], dim=1)  # each user's top 3 and history
    out = constrained_beam_search(model, batch, trie, beam_width=30, top_k=10, exclude=exclude)
    kept = scores.masked_fill(torch.zeros_like(scores, dtype=torch.bool).scatter(1, exclude.clamp(min=0), exclude >= 0),
                              float("-inf"))
    expected_scores, expected_items = kept.topk(10, dim=1)
    assert torch.equal(out["item_ids"], expected_items)
    torch.testing.assert_close(out["scores"], expected_scores, atol=1e-4, rtol=1e-4)  # not renormalised
    # a narrow beam spends no slot on a prefix whose items are all excluded: still 10 items each
    narrow = constrained_beam_search(model, batch, trie, beam_width=10, top_k=10, exclude=exclude)
    assert (narrow["item_ids"] >= 0).all()
    assert not (narrow["item_ids"][:, :, None] == exclude[:, None, :]).any()


def test_tiny_model_overfits_tiny_data_to_recall_at_1():
    g = torch.Generator().manual_seed(0)
    K, T, L, n_users = 5, 4, 4, 12
    catalogue = random_catalogue(20, T, K, g)
    history = torch.randint(0, 20, (n_users, L), generator=g)
    history[:4, 2:] = -1
    raw = {"user_id": torch.arange(n_users), "history": history, "target": torch.randint(0, 20, (n_users,), generator=g)}
    batch = sem_id_batch(raw, catalogue)
    model = small_model(K, T, L)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(120):
        loss = model.loss(model(batch["user_ids"], batch["history"], batch["target"]), batch["target"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = constrained_beam_search(model, batch, SemanticIdTrie(catalogue, K), beam_width=5, top_k=5)
    metrics = TopKMetrics(ks=(1, 5))
    metrics.update(out["item_ids"], batch["target_item"])
    assert metrics.compute()["recall@1"] == 1.0, loss.item()


def test_cross_attention_cache_is_one_copy_per_user_not_per_beam(monkeypatch):
    # The encoder output of a user is read by all its beams: caching it per beam multiplied memory by
    # the beam width (MovieLens: 801 tokens x 10 beams). Results are those of the per-beam copy.
    g = torch.Generator().manual_seed(1)
    K, T, L, B = 4, 4, 5, 3
    catalogue = random_catalogue(40, T, K, g)
    model = small_model(K, T, L).eval()
    history = torch.randint(0, 40, (B, L), generator=g)
    history[1, 2:] = -1  # padding differs between users: each beam must see its own user's mask
    batch = sem_id_batch({"user_id": torch.arange(B), "history": history, "target": torch.zeros(B, dtype=torch.long)}, catalogue)
    caches = []
    new_cache = model.new_cache
    monkeypatch.setattr(model, "new_cache", lambda: caches.append(new_cache()) or caches[-1])
    out = constrained_beam_search(model, batch, SemanticIdTrie(catalogue, K), beam_width=40, top_k=10)  # exhaustive
    for layer in caches[0]:
        assert layer["cross"]["k"].shape[0] == B and layer["cross"]["v"].shape[0] == B
        assert layer["self"]["k"].shape[0] == B * 40
    expected_scores, expected_items = exhaustive_scores(model, batch, catalogue).topk(10, dim=1)
    torch.testing.assert_close(out["scores"], expected_scores, atol=1e-4, rtol=1e-4)
    assert torch.equal(out["item_ids"], expected_items)


def test_constrained_softmax_scores_are_log_probabilities_over_the_catalogue():
    # Every item's teacher-forced probability under the constrained softmax: they sum to 1 per user,
    # and a beam as wide as the catalogue returns exactly those log-probabilities.
    g = torch.Generator().manual_seed(1)
    K, T, L, n = 4, 3, 3, 25
    catalogue = random_catalogue(n, T, K, g)
    model = small_model(K, T, L, constrained_softmax=True).eval()
    history = torch.randint(0, n, (4, L), generator=g)
    batch = sem_id_batch({"user_id": torch.arange(4), "history": history, "target": torch.zeros(4, dtype=torch.long)}, catalogue)
    scores = exhaustive_scores(model, batch, catalogue)  # [4, n]
    torch.testing.assert_close(scores.exp().sum(dim=1), torch.ones(4))
    out = constrained_beam_search(model, batch, SemanticIdTrie(catalogue, K), beam_width=n, top_k=n)
    torch.testing.assert_close(out["scores"], scores.sort(dim=1, descending=True).values, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("constrained", [False, True])
def test_prior_adds_its_log_counts_to_every_levels_logits(constrained):
    g = torch.Generator().manual_seed(3)
    n_users, K, T, n = 4, 3, 3, 20
    catalogue = random_catalogue(n, T, K, g)
    trie = SemanticIdTrie(catalogue, K)
    model = RandomLogitsModel(n_users, T, K, scale=3.0, seed=5, constrained_softmax=constrained)
    batch = {"user_ids": torch.arange(n_users), "history": torch.zeros(n_users, 1, T, dtype=torch.long)}
    items = torch.stack([torch.randperm(n, generator=g)[:5] for _ in range(n_users)])  # [B, 5] distinct
    items[0] = -1                                                                       # a user with no prior
    counts = torch.randint(1, 9, (n_users, 5), generator=g)
    weight = 0.7
    out = constrained_beam_search(model, batch, trie, beam_width=K ** T, top_k=10, prior=(items, counts),
                                  prior_weight=weight)
    # brute force: each item's score is the sum over levels of the log-softmax of the logits after its prefix
    # plus weight * log(1 + the counts of the user's prior items under each code)
    scores = torch.full((n_users, n), float("-inf"))
    for b in range(n_users):
        for i in range(n):
            total, previous = 0.0, model.sem_id_emb.bos_token
            for d in range(T):
                logits = model.table[b, d, previous].clone()
                for c in range(K):
                    under = [(catalogue[int(j), :d] == catalogue[i, :d]).all() and catalogue[int(j), d] == c
                             for j in items[b].clamp(min=0)]
                    mass = sum(float(counts[b, e]) for e, hit in enumerate(under) if hit and items[b, e] >= 0)
                    logits[c] += weight * torch.log1p(torch.tensor(mass))
                allowed = torch.tensor([bool(((catalogue[:, :d] == catalogue[i, :d]).all(1)
                                              & (catalogue[:, d] == c)).any()) for c in range(K)])
                logp = (torch.log_softmax(logits.masked_fill(~allowed, float("-inf")), -1) if constrained
                        else torch.log_softmax(logits, -1))
                total += float(logp[catalogue[i, d]])
                previous = d * K + int(catalogue[i, d])
            scores[b, i] = total
    expected_scores, expected_items = scores.topk(10, dim=1)
    assert torch.equal(out["item_ids"], expected_items)
    torch.testing.assert_close(out["scores"], expected_scores, atol=1e-4, rtol=1e-4)
    # weight 0 (or no prior) is the model's own search, to the bit
    own = constrained_beam_search(model, batch, trie, beam_width=K ** T, top_k=10)
    off = constrained_beam_search(model, batch, trie, beam_width=K ** T, top_k=10, prior=(items, counts),
                                  prior_weight=0.0)
    assert torch.equal(own["item_ids"], off["item_ids"]) and torch.equal(own["scores"], off["scores"])
    assert not torch.equal(own["item_ids"][1:], out["item_ids"][1:])  # the prior moved someone's ranking
    assert torch.equal(own["item_ids"][0], out["item_ids"][0])        # ... but not the user without one
