"""Retrieval with the trained model: examples of a split as semantic IDs, trie-constrained top-K
for many users at once, and Recall/NDCG@K over them (optionally summed over DDP ranks).
Used by train_decoder.py (validation) and evaluate.py (the test split)."""
from __future__ import annotations

import sys

import torch
from tqdm import tqdm

from data.processed import SeqData
from data.batching import data_batch, trim_history
from modules.beam_search import constrained_beam_search
from runtime.distributed import DistEnv, all_reduce_sum
from evaluation.metrics import TopKMetrics
from modules.model import EncoderDecoderRetrievalModel
from evaluation.popularity import most_popular
from modules.semantic_id_trie import SemanticIdTrie
from evaluation.transition import successor_counts, transition_topk

METRIC_KS = (1, 5, 10)
PRIOR_SUCCESSORS = 30  # successors per item the search's transition prior reads (the floor ranks the first 10)


@torch.no_grad()
def recommend(model: EncoderDecoderRetrievalModel, data: SeqData, sem_ids: torch.Tensor, trie: SemanticIdTrie,
              beam_width: int, top_k: int, batch_size: int, device: torch.device,
              index: torch.Tensor | None = None, progress: bool = False,
              sort_by_length: bool = False, exclude_history: bool = False,
              successors: tuple[torch.Tensor, torch.Tensor] | None = None,
              prior_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """Top-k for examples `index` (default: all) of a split: item_ids [M, top_k], sem_ids [M, top_k, T], scores [M, top_k].
    sort_by_length: chunks of users with similar history lengths, each trimmed to its longest history
    (less padding to encode and to cache for cross-attention: larger chunks fit); same results, in `index` order.
    exclude_history: never return an item of the example's history (the model's input, its last
    max_seq_len items); the ranking of the other items is unchanged.
    successors (items [n_items, E], counts [n_items, E]: evaluation/transition.successor_counts of the training
    split) with prior_weight > 0: the search adds that weight times log(1 + count) of what followed each
    example's last item (constrained_beam_search's prior; not the paper's)."""
    index = torch.arange(len(data)) if index is None else index
    order = torch.argsort(data.history_lengths[index], stable=True) if sort_by_length else torch.arange(len(index))
    out = {"item_ids": [], "sem_ids": [], "scores": []}
    for chunk in tqdm(index[order].split(batch_size), desc="beam search", disable=not progress, file=sys.stderr, leave=False):
        batch = data_batch(data, chunk, sem_ids, device)
        if sort_by_length:
            batch = trim_history(batch, data.history_lengths[chunk].max())
        exclude = data.history_batch(chunk).to(device) if exclude_history else None  # [chunk, max_seq_len]
        prior = None
        if successors is not None:  # what followed each example's last item in training, and how often
            last = data.last_items[chunk]
            prior = (successors[0][last].to(device), successors[1][last].to(device))
        found = constrained_beam_search(model, batch, trie, beam_width, top_k, exclude, prior, prior_weight)
        for k in out:
            out[k].append(found[k].cpu())
    unsort = torch.argsort(order)
    return {k: torch.cat(v)[unsort] for k, v in out.items()}


def baseline_topk(train: SeqData, data: SeqData, k: int, index: torch.Tensor | None = None,
                  exclude_history: bool = False) -> dict[str, torch.Tensor]:
    """The floors' top-k item ids [M, k] for examples `index` (default: all) of `data`, counted on the
    training split only: popularity (the most frequent training targets) and transition (for each
    history's last item, the items that most often followed it; evaluation/transition.py).
    exclude_history: as for `recommend`, each list skips the example's history items."""
    index = torch.arange(len(data)) if index is None else index
    last = data.last_items[index]  # [M]
    history = data.history_batch(index) if exclude_history else None  # [M, max_seq_len]
    wide = k if history is None else k + history.shape[1]  # enough to fill k after dropping the history
    ranked = {"popularity": most_popular(train.targets, train.n_items, wide).expand(len(last), -1),
              "transition": transition_topk(train.last_items, train.targets, last, train.n_items, wide)}
    return {name: top[:, :k] if history is None else drop_items(top, history, k) for name, top in ranked.items()}


def transition_prior_table(train: SeqData, k: int = PRIOR_SUCCESSORS) -> tuple[torch.Tensor, torch.Tensor]:
    """The search's transition prior (train.eval_transition_prior), counted on the training split only, as the
    transition floor: (items [n_items, k], counts [n_items, k]) of what followed each item (successor_counts)."""
    return successor_counts(train.last_items, train.targets, train.n_items, k)


def drop_items(ranked: torch.Tensor, exclude: torch.Tensor, k: int) -> torch.Tensor:
    """ranked [M, N] item ids, best first; exclude [M, E] (-1 = none) -> [M, k]: the first k of each row
    that are not excluded, in order (-1 fills a row that runs out)."""
    keep = ~(ranked[:, :, None] == exclude[:, None, :]).any(dim=-1) & (ranked >= 0)  # [M, N]
    order = torch.argsort((~keep).int(), dim=1, stable=True)[:, :k]  # kept ones first, rank kept
    picked = torch.gather(ranked, 1, order)
    return picked.masked_fill(~torch.gather(keep, 1, order), -1)


def retrieval_metrics(ranked_items: torch.Tensor, targets: torch.Tensor, env: DistEnv | None = None) -> dict[str, float]:
    """Recall/NDCG@K; with `env`, over the users of every rank (each passes its own share)."""
    metrics = TopKMetrics(METRIC_KS)
    metrics.update(ranked_items, targets)
    if env is not None and env.is_distributed:  # sums and counts add up over ranks; means do not
        totals = all_reduce_sum(torch.tensor([*metrics.sums.values(), metrics.count], dtype=torch.float64,
                                             device=env.device), env).tolist()
        metrics.sums, metrics.count = dict(zip(metrics.sums, totals[:-1])), int(totals[-1])
    return metrics.compute()
