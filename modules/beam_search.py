"""Trie-constrained beam search over semantic IDs (the paper's retrieval step, Sec. 3.2).

Per step: log-softmax of the decoder's logits, THEN tokens that no item's ID allows
after the beam's prefix are set to -inf, THEN the top-k: masking after the top-k
would let invalid tokens take beam slots. Scores are sums of the unmasked
log-probabilities, i.e. log P(item ID | history), so with a beam as wide as the
catalogue the result is the exact ranking by teacher-forced likelihood. A model trained
with `constrained_softmax` takes its softmax over the valid codes only (mask, then
log-softmax), as in training: scores are then log-probabilities over the catalogue's items.
`exclude` (e.g. the user's history) drops items after the softmax, as a filter: prefixes that lead only
to excluded items are masked at every depth (SemanticIdTrie.blocked), so no beam is spent on them.

The encoder runs once per user; the decoder's keys/values are cached and reordered
with the beams; the cross-attention keys/values stay one copy per user (not per beam). Deterministic: no sampling, dropout off.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from modules.semantic_id_trie import SemanticIdTrie


def reorder_cache(cache: list[dict], index: Tensor) -> None:
    """Keep rows `index` of every cached key/value (in place): beams follow their parents. The
    cross-attention cache holds one row per user, shared by its beams: it never moves."""
    for layer in cache:
        for kind, attn in layer.items():
            if kind == "cross":
                continue
            for name, t in attn.items():
                attn[name] = t.index_select(0, index)


@torch.no_grad()
def constrained_beam_search(model, batch: dict[str, Tensor], trie: SemanticIdTrie, beam_width: int, top_k: int,
                            exclude: Tensor | None = None, prior: tuple[Tensor, Tensor] | None = None,
                            prior_weight: float = 0.0) -> dict[str, Tensor]:
    """batch: user_ids [B], history [B, L, T] (see modules.model.sem_id_batch).
    exclude [B, E]: item ids never to return for each row (-1 = none), e.g. the user's history; a filter:
    the other items keep their scores, and no beam is spent on a prefix that leads only to excluded items.
    prior (items [B, E] distinct ids, -1 = none; weights [B, E] >= 0), e.g. the items that followed the user's last
    item in training and how often: at every depth each code's logit gains prior_weight * log(1 + the weight of
    the row's prior items under it), before the softmax (a search-time product with a count model; not the
    paper's; studies/successor_prior.py).
    Returns item_ids [B, top_k] (-1 where the catalogue has fewer than top_k items),
    sem_ids [B, top_k, T] and scores [B, top_k] (log-probabilities, descending; with a prior, of the product)."""
    if top_k > beam_width:
        raise ValueError(f"top_k={top_k} needs beam_width >= top_k, got beam_width={beam_width}")
    if trie.codebook_size != model.codebook_size or trie.depth != model.n_levels:
        raise ValueError(f"trie of {trie.depth} levels x {trie.codebook_size} codes does not fit a model of "
                         f"{model.n_levels} levels x {model.codebook_size} codes")
    was_training = model.training
    model.eval()
    try:
        memory, padding = model.encode(batch["user_ids"], batch["history"])
        B, K, T = memory.shape[0], trie.codebook_size, trie.depth
        device = memory.device
        cache = model.new_cache()
        tokens = torch.full((B, 1), model.sem_id_emb.bos_token, dtype=torch.long, device=device)
        nodes = torch.zeros(B, dtype=torch.long, device=device)   # trie node of each beam's prefix
        scores = torch.zeros(B, device=device)                     # [B * beams]
        prefixes = torch.zeros(B, 0, dtype=torch.long, device=device)
        beams = 1
        # a model with history_bias scores the codes that lead only to the user's own items with its learned logit
        bias = getattr(model, "history_bias", None)  # stand-in models in tests have none
        history_items = trie.item_ids(batch["history"]) if bias is not None else None  # [B, L]
        for depth in range(T):
            logits = model.decode(tokens, memory if depth == 0 else None, padding, cache, start=depth)[:, -1]
            if history_items is not None:  # part of the model's logits: before the softmax, as in training
                repeat = trie.blocked(depth, rearrange(nodes, "(b w) -> b w", b=B), history_items)
                logits = logits.float() + bias[depth] * rearrange(repeat, "b w k -> (b w) k")
            if prior is not None and prior_weight:
                mass = trie.mass(depth, rearrange(nodes, "(b w) -> b w", b=B), *prior)   # [B, beams, K]
                logits = logits.float() + prior_weight * rearrange(torch.log1p(mass), "b w k -> (b w) k")
            allowed = trie.allowed(depth, nodes)                                    # [B*beams, K]
            if model.constrained_softmax:  # the softmax over valid codes only, as the model was trained
                logp = torch.log_softmax(logits.float().masked_fill(~allowed, float("-inf")), dim=-1)
                logp = torch.where(allowed.any(dim=-1, keepdim=True), logp, float("-inf"))  # a dead beam's row is NaN: keep it dead
            else:
                logp = torch.log_softmax(logits.float(), dim=-1).masked_fill(~allowed, float("-inf"))  # mask BEFORE the top-k
            if exclude is not None:  # after the softmax: a filter, not a renormalisation over the rest
                blocked = trie.blocked(depth, rearrange(nodes, "(b w) -> b w", b=B), exclude)
                logp = logp.masked_fill(rearrange(blocked, "b w k -> (b w) k"), float("-inf"))
            candidates = rearrange(scores[:, None] + logp, "(b w) k -> b (w k)", b=B)
            keep = min(beam_width, beams * K)
            top_scores, top_index = candidates.topk(keep, dim=1)                  # [B, keep], sorted
            parent = (top_index // K + torch.arange(B, device=device)[:, None] * beams).flatten()
            codes = (top_index % K).flatten()
            scores = top_scores.flatten()
            # A -inf candidate fills a slot only when fewer valid ones exist: mark it dead.
            nodes = torch.where(torch.isfinite(scores), trie.next_nodes(depth, nodes[parent], codes), -1)
            prefixes = torch.cat([prefixes[parent], codes[:, None]], dim=1)
            reorder_cache(cache, parent)  # `padding` stays [B, S]: it masks each user's encoder output
            tokens = model.sem_id_emb.tokens(codes, torch.tensor(depth, device=device))[:, None]
            beams = keep
        # At the last depth the trie node is the item id; distinct beams are distinct IDs.
        item_ids = rearrange(nodes, "(b w) -> b w", b=B)[:, :top_k]
        sem_ids = rearrange(prefixes, "(b w) t -> b w t", b=B)[:, :top_k].masked_fill(item_ids[..., None] < 0, -1)
        scores = rearrange(scores, "(b w) -> b w", b=B)[:, :top_k]
        if item_ids.shape[1] < top_k:  # only when K^T < top_k: a toy codebook
            missing = top_k - item_ids.shape[1]
            item_ids = torch.cat([item_ids, item_ids.new_full((B, missing), -1)], dim=1)
            sem_ids = torch.cat([sem_ids, sem_ids.new_full((B, missing, T), -1)], dim=1)
            scores = torch.cat([scores, scores.new_full((B, missing), float("-inf"))], dim=1)
        return {"item_ids": item_ids, "sem_ids": sem_ids, "scores": scores}
    finally:
        model.train(was_training)
