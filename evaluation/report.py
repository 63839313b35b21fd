"""One evaluation of stage 2 on a split, as one record: every user ranked by TIGER's trie-constrained
beam search and by the floors (popularity, transition), under both ranking protocols, with
Recall/NDCG@K, catalogue coverage and the learning-health signals. train_decoder.py's validation and
evaluate.py both call `evaluate_split`, so a number means the same thing in both.

The two ranking protocols (plain = the paper's, history_skipped) are defined in evaluation/protocols.py.
"""
from __future__ import annotations

import torch

from data.batching import data_batch
from data.processed import SeqData
from evaluation.learning_health import coverage_and_top1_share, level_nll_sums, prior_nll
from evaluation.protocols import PROTOCOLS
from evaluation.retrieval import METRIC_KS, baseline_topk, recommend, retrieval_metrics
from modules.model import EncoderDecoderRetrievalModel
from modules.semantic_id_trie import SemanticIdTrie
from runtime.distributed import DistEnv, all_reduce_sum

REPORTED = ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10")


def topk_health(ranked: torch.Tensor, n_items: int, env: DistEnv | None = None) -> dict[str, float]:
    """ranked [M, K] item ids (-1 = empty) of this rank's users -> coverage@K (share of the catalogue in
    anybody's top-K) and top1_share (the most common top-1's share of users), over every rank's users."""
    counts = torch.stack([torch.bincount(ranked[ranked >= 0], minlength=n_items),
                          torch.bincount(ranked[:, 0].clamp(min=0), minlength=n_items)])  # [2, n_items]
    if env is not None:
        counts = all_reduce_sum(counts.to(env.device), env).cpu()
    health = coverage_and_top1_share(counts[0], counts[1])
    return {f"coverage@{ranked.shape[1]}": health["coverage"], "top1_share": health["top1_share"]}


def floor_rows(train: SeqData, data: SeqData, index: torch.Tensor | None = None, env: DistEnv | None = None,
               protocols: tuple[str, ...] = PROTOCOLS) -> dict[str, dict[str, dict[str, float]]]:
    """The floors, counted on the training split only, for examples `index` (default: all) of `data`:
    {protocol: {"popularity": metrics, "transition": metrics}} with Recall/NDCG@K and coverage@K."""
    index = torch.arange(len(data)) if index is None else index
    rows = {}
    for protocol in protocols:
        ranked = baseline_topk(train, data, max(METRIC_KS), index, exclude_history=protocol == "history_skipped")
        rows[protocol] = {name: {**retrieval_metrics(top, data.targets[index], env),
                                 **{k: v for k, v in topk_health(top, data.n_items, env).items() if k != "top1_share"}}
                          for name, top in ranked.items()}
    return rows


def validation_users(n_examples: int, max_users: int | None) -> torch.Tensor:
    """The validation examples a run evaluates (train.valid_max_users): all of them (None, or at least as many
    as there are), else max_users fixed ones spread evenly over the split."""
    if max_users is None or max_users >= n_examples:
        return torch.arange(n_examples)
    return torch.linspace(0, n_examples - 1, max_users).long()


def validation_baselines(train: SeqData, valid: SeqData, index: torch.Tensor, sem_ids: torch.Tensor,
                         selected_on: str) -> dict:
    """What a decoder run's validation numbers are read against (its baselines.json), on validation examples
    `index`: the floors under both protocols (popularity, the transition baseline), those of the selection
    protocol also at the top level, and the per-level NLL of a history-blind prior (evaluation/learning_health.py)."""
    floors = floor_rows(train, valid, index)  # {protocol: {"popularity": .., "transition": ..}}
    return {"protocol": selected_on, **floors[selected_on], **floors,
            "prior_nll": prior_nll(sem_ids, train.targets, valid.targets[index]).tolist()}


def baselines_lines(baselines: dict) -> list[str]:
    """validation_baselines(...) as log lines."""
    lines = [f"valid {name} ({protocol}): " + " ".join(f"{k} {v:.4f}" for k, v in baselines[protocol][name].items())
             for protocol in PROTOCOLS for name in ("popularity", "transition")]
    return lines + ["valid prior NLL per level (history ignored): " + " ".join(f"{v:.3f}" for v in baselines["prior_nll"])]


@torch.no_grad()
def evaluate_split(model: EncoderDecoderRetrievalModel, data: SeqData, sem_ids: torch.Tensor, trie: SemanticIdTrie, *,
                   beam_width: int, batch_size: int, device: torch.device, index: torch.Tensor | None = None,
                   env: DistEnv | None = None, sort_by_length: bool = False, protocols: tuple[str, ...] = PROTOCOLS,
                   train: SeqData | None = None, level_nll: bool = False, progress: bool = False,
                   successors: tuple[torch.Tensor, torch.Tensor] | None = None, prior_weight: float = 0.0) -> dict:
    """Rank examples `index` (default: all; with DDP this rank's share) of `data` under each protocol.

    Returns {"users": N over every rank, protocol: {"tiger": {recall@K, ndcg@K, coverage@10, top1_share},
    and with `train`: "popularity", "transition": {recall@K, ndcg@K, coverage@10}}, ...,
    with `level_nll`: "nll_level_<t>": teacher-forced NLL of each level of the target ID,
    "found": {protocol: recommend()'s output for this rank's users (item_ids, sem_ids, scores)}}.
    successors, prior_weight: the search's transition prior (recommend()'s; off by default).
    One beam search per protocol: skipping the history changes which prefixes the beams keep, so the
    plain search cannot serve both exactly."""
    index = torch.arange(len(data)) if index is None else index
    record: dict = {"found": {}}
    for protocol in protocols:
        found = recommend(model, data, sem_ids, trie, beam_width, max(METRIC_KS), batch_size, device, index,
                          progress=progress, sort_by_length=sort_by_length,
                          exclude_history=protocol == "history_skipped", successors=successors,
                          prior_weight=prior_weight)
        record["found"][protocol] = found
        record[protocol] = {"tiger": {**retrieval_metrics(found["item_ids"], data.targets[index], env),
                                      **topk_health(found["item_ids"], data.n_items, env)}}
    if train is not None:
        for protocol, rows in floor_rows(train, data, index, env, protocols).items():
            record[protocol].update(rows)
    if level_nll:
        sums, count = level_nll_sums(model, (data_batch(data, chunk, sem_ids, device)
                                             for chunk in index.split(batch_size)), trie)
        totals = torch.cat([sums, torch.tensor([count], dtype=torch.float64, device=sums.device)])
        totals = (all_reduce_sum(totals, env) if env is not None else totals).cpu()
        record.update({f"nll_level_{t}": v for t, v in enumerate((totals[:-1] / totals[-1]).tolist())})
    users = torch.tensor([len(index)], device=env.device if env is not None else "cpu")
    record["users"] = int(all_reduce_sum(users, env).item()) if env is not None else len(index)
    return record


def curve_fields(record: dict, selected_on: str) -> dict:
    """evaluate_split's record -> one curve.jsonl line's evaluation fields: the selection protocol's TIGER row at
    the top level (what select_metric reads, and the keys curves had before both protocols were kept), named by
    "protocol", then each protocol's row under its name, then the per-level NLL."""
    return {"protocol": selected_on, **record[selected_on]["tiger"],
            **{protocol: record[protocol]["tiger"] for protocol in PROTOCOLS if protocol in record},
            **{k: v for k, v in record.items() if k.startswith("nll_level_")}}


def validation_line(fields: dict) -> str:
    """curve_fields' output as one log line: each protocol's metrics, then the per-level NLL."""
    rows = [f"{p} " + " ".join(f"{k} {v:.4f}" for k, v in fields[p].items()) for p in PROTOCOLS if p in fields]
    nll = [f"{v:.2f}" for k, v in fields.items() if k.startswith("nll_level_")]
    return " | ".join(rows + (["nll " + "/".join(nll)] if nll else []))
