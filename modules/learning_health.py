"""Signals that tell whether stage 2 reads the history at all, beyond Recall/NDCG.

- Per-level NLL of the validation targets' codes (teacher forced), next to the NLL of a prior
  that ignores the history: p(c_l | c_<l) counted over the training targets. For the first
  code that prior is the codes' marginal; a first-code NLL stuck at it means the model
  predicts the same coarse cluster whoever the user is. For the later levels the prior is
  nearly the catalogue itself (few items share a prefix), so those NLLs drop early whatever
  the model learns about users.
- coverage@10, the share of the catalogue in anybody's top-10, and the share of users whose
  top-1 is the most common top-1: a model that ignores its input recommends the same few items
  to everyone.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor


def prior_nll(train_codes: Tensor, eval_codes: Tensor, codebook_size: int, alpha: float = 1.0) -> Tensor:
    """train_codes [M, T], eval_codes [N, T] target codes -> [T] mean NLL (nats) of eval_codes[:, l]
    under p(c_l | c_<l) counted on train_codes, add-alpha smoothed over the codebook_size codes."""
    T = train_codes.shape[1]
    out = torch.empty(T, dtype=torch.float64)
    for level in range(T):
        # One context id per distinct prefix c_<l (level 0: a single empty context).
        prefixes = torch.cat([train_codes[:, :level], eval_codes[:, :level]])
        _, context = torch.unique(prefixes, dim=0, return_inverse=True) if level else (None, torch.zeros(len(prefixes), dtype=torch.long))
        train_ctx, eval_ctx = context[:len(train_codes)], context[len(train_codes):]
        n_ctx = int(context.max()) + 1
        counts = torch.zeros(n_ctx, codebook_size, dtype=torch.float64)
        counts.index_put_((train_ctx, train_codes[:, level]), torch.ones(len(train_codes), dtype=torch.float64), accumulate=True)
        probs = (counts + alpha) / (counts.sum(dim=1, keepdim=True) + alpha * codebook_size)
        out[level] = -probs[eval_ctx, eval_codes[:, level]].log().mean()
    return out


@torch.no_grad()
def level_nll_sums(model: torch.nn.Module, batches: Iterable[dict[str, Tensor]]) -> tuple[Tensor, int]:
    """Teacher-forced NLL of each target level over `batches` -> (sums [T] float64, number of examples)."""
    sums = torch.zeros(model.n_levels, dtype=torch.float64, device=next(model.parameters()).device)
    count = 0
    for batch in batches:
        logits = model(batch["user_ids"], batch["history"], batch["target"]).float()  # [B, T, K]
        nll = F.cross_entropy(rearrange(logits, "b t k -> b k t"), batch["target"], reduction="none")  # [B, T]
        sums += nll.sum(dim=0).double()
        count += len(nll)
    return sums, count


def coverage_and_top1_share(topk_counts: Tensor, top1_counts: Tensor) -> dict[str, float]:
    """topk_counts, top1_counts [n_items]: how often each item is in a user's top-K / is a user's
    top-1 -> coverage (share of items recommended to anyone) and the most common top-1's share."""
    users = top1_counts.sum().item()
    return {"coverage": (topk_counts > 0).sum().item() / len(topk_counts),
            "top1_share": top1_counts.max().item() / users if users else math.nan}
