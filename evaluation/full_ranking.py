"""Full ranking of the whole catalogue by a model that scores every item (SASRec, modules/sasrec.py), under
both ranking protocols of evaluation/report.py: what train_sasrec.py validates and tests with, beside the
floors of the same module."""
from __future__ import annotations

import torch
from torch import Tensor

from data.processed import SeqData
from evaluation.protocols import PROTOCOLS



@torch.no_grad()
def rank_all_items(model: torch.nn.Module, data: SeqData, k: int, batch_size: int, device: torch.device,
                   index: Tensor | None = None) -> dict[str, Tensor]:
    """Full ranking over the whole catalogue for examples `index` (default: all) of a split, under both
    protocols: {"plain": [M, k], "history_skipped": [M, k]} item ids, best first. "history_skipped"
    removes the example's history (the model's input, its last max_seq_len items) before taking the top
    k; every other item keeps its score, as in TIGER's eval_exclude_history (evaluation/retrieval.py)."""
    model.eval()
    index = torch.arange(len(data)) if index is None else index
    out: dict[str, list[Tensor]] = {p: [] for p in PROTOCOLS}
    for chunk in index.split(batch_size):
        history = data.history_batch(chunk).to(device)  # [b, L], -1 padded
        scores = model.item_logits(model.last_hidden(history))  # [b, N]
        out["plain"].append(scores.topk(k, dim=1).indices.cpu())
        # one extra column takes the padding slots' -inf, then is dropped
        padded = torch.cat([scores, scores.new_zeros(len(chunk), 1)], dim=1)
        padded.scatter_(1, history.masked_fill(history < 0, scores.shape[1]), float("-inf"))
        out["history_skipped"].append(padded[:, :-1].topk(k, dim=1).indices.cpu())
    return {p: torch.cat(v) for p, v in out.items()}
