"""SASRec, the ID-based baseline of TIGER's Table 1: Kang & McAuley, "Self-Attentive Sequential
Recommendation", ICDM 2018 (here "the paper"), and its public TensorFlow code, github.com/kang205/SASRec
("the code", model.py and modules.py).

    input   items s_0 .. s_{n-1} of one history, oldest first, right-padded with -1
    output  at position t a vector F_t that scores every item i as r_{i,t} = <F_t, M_i>: position t
            predicts s_{t+1} from s_0 .. s_t only (causal attention)

Layout: histories are right-padded and position t is the t-th item counted from the OLDEST visible
item (the code left-pads and counts back from the newest). With right padding, position t of a causal
pass over s_0 .. s_{n-1} computes exactly what a pass over s_0 .. s_t alone computes, so one pass
trains every prefix of a window as its own example (train_sasrec.py relies on that; RecBole's SASRec
uses the same layout). Shapes: B rows, L positions, D = d_model, N items.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

LOSSES = ("bce", "ce")


class CausalSelfAttention(nn.Module):
    """The paper's Sec. III-B self-attention layer: softmax(Q K^T / sqrt(d)) V with Q, K, V linear maps
    of the input (biased, as the code's tf.layers.dense; no output projection, as in the paper and
    the code), causal, dropout on the attention weights (the code)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads, self.dropout = n_heads, dropout
        self.q, self.k, self.v = (nn.Linear(d_model, d_model) for _ in range(3))

    def forward(self, queries: Tensor, keys: Tensor, allowed: Tensor) -> Tensor:
        """queries, keys [B, L, D]; allowed [B, 1, L, L] bool (query t may read key s) -> [B, L, D]."""
        split = lambda x: rearrange(x, "b l (h d) -> b h l d", h=self.n_heads)
        q, k, v = split(self.q(queries)), split(self.k(keys)), split(self.v(keys))  # [B, h, L, D/h]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                             dropout_p=self.dropout if self.training else 0.0)
        return rearrange(out, "b h l d -> b l (h d)")


class Block(nn.Module):
    """One self-attention block (paper Sec. III-C), with the code's placement of the layer norms:
        q = LN(x);  x = q + Attention(q, x, x);  y = LN(x);  x = y + FFN(y)
    (the paper writes x + Dropout(g(LN(x))); the code adds the normalised input back and reads keys
    and values from the un-normalised x). FFN(y) = ReLU(y W1 + b1) W2 + b2 (paper Sec. III-B), with
    dropout after each layer as in the code's feedforward()."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(d_model, eps=1e-8)  # the code's normalize() uses epsilon 1e-8
        self.attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.ffn_norm = nn.LayerNorm(d_model, eps=1e-8)
        self.ffn = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(d_model, d_model), nn.Dropout(dropout))

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        q = self.attn_norm(x)                  # [B, L, D]
        x = q + self.attn(q, x, allowed)
        y = self.ffn_norm(x)
        return y + self.ffn(y)


class SASRec(nn.Module):
    def __init__(self, n_items: int, max_seq_len: int, *, d_model: int, n_blocks: int, n_heads: int,
                 dropout: float) -> None:  # no defaults here: train_sasrec.train()'s gin signature holds them, once
        super().__init__()
        # Kept so that a checkpoint can rebuild the model without the gin file.
        self.kwargs = dict(n_items=n_items, max_seq_len=max_seq_len, d_model=d_model, n_blocks=n_blocks,
                           n_heads=n_heads, dropout=dropout)
        self.n_items, self.max_seq_len, self.d_model = n_items, max_seq_len, d_model
        # Item embedding M (paper Sec. III-A), shared by the input and the prediction layer (Sec. III-D
        # "Shared Item Embedding"); row n_items is the padding item, kept at zero (the code's zero_pad).
        self.item_emb = nn.Embedding(n_items + 1, d_model, padding_idx=n_items)
        self.pos_emb = nn.Embedding(max_seq_len, d_model)  # learned positional embedding P (Sec. III-A)
        self.emb_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, dropout) for _ in range(n_blocks))
        self.final_norm = nn.LayerNorm(d_model, eps=1e-8)  # the code normalises the last block's output
        # The code's variables take TensorFlow's default initialiser, Glorot (Xavier) uniform, and zero biases.
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.xavier_uniform_(p)
            elif name.endswith(".bias") and "norm" not in name:
                nn.init.zeros_(p)
        with torch.no_grad():
            self.item_emb.weight[n_items].zero_()

    def forward(self, items: Tensor) -> Tensor:
        """items [B, L] item ids, oldest first, -1 = padding (L <= max_seq_len) -> F [B, L, D]; padded positions are 0
        before the final norm. F[:, t] depends on items[:, :t+1] only."""
        B, L = items.shape
        if L > self.max_seq_len:
            raise ValueError(f"{L} positions, more than max_seq_len={self.max_seq_len}")
        valid = items >= 0  # [B, L]
        keep = valid.unsqueeze(-1).to(self.item_emb.weight.dtype)  # [B, L, 1]
        # E_t = M_{s_t} * sqrt(d) + P_t (paper Sec. III-A; the scale is the code's embedding(scale=True))
        x = self.item_emb(items.masked_fill(~valid, self.n_items)) * math.sqrt(self.d_model)  # [B, L, D]
        x = x + self.pos_emb.weight[:L]
        x = self.emb_dropout(x) * keep  # the code zeroes padded positions after the dropout
        # Causality (Sec. III-B "Causality"): query t reads keys s <= t, never a padded key (the code's key
        # masking); a padded query also reads itself, so no row of the softmax is empty.
        causal = torch.ones(L, L, dtype=torch.bool, device=items.device).tril()  # [L, L]
        allowed = (causal & valid[:, None, :]) | torch.eye(L, dtype=torch.bool, device=items.device)  # [B, L, L]
        allowed = allowed.unsqueeze(1)  # [B, 1, L, L]: the same for every head
        for block in self.blocks:
            x = block(x, allowed) * keep  # the code's `self.seq *= mask` after each block
        return self.final_norm(x)

    def item_logits(self, hidden: Tensor) -> Tensor:
        """hidden [..., D] -> r [..., N]: the score of every item (paper Sec. III-D, shared embedding M)."""
        return hidden @ self.item_emb.weight[:self.n_items].T

    def last_hidden(self, items: Tensor) -> Tensor:
        """items [B, L], right-padded, at least one item per row -> [B, D]: F at each row's newest item, the
        vector that predicts the item after the history."""
        last = (items >= 0).sum(dim=1) - 1  # [B]
        return self.forward(items)[torch.arange(len(items), device=items.device), last]

    def loss(self, hidden: Tensor, positives: Tensor, negatives: Tensor | None = None, kind: str = "bce") -> Tensor:
        """Mean loss over the N trained positions. hidden [N, D]; positives [N] the true next items.
        "bce" (the paper's Sec. III-E): -log sigmoid(r_pos) - log(1 - sigmoid(r_neg)) with negatives [N], one
        sampled item per position that the user never interacted with (the code samples one per position).
        "ce": full-softmax cross-entropy over all N items (not the paper's; the common stronger variant)."""
        if kind == "bce":
            if negatives is None:
                raise ValueError("the BCE loss needs one sampled negative per position")
            pos = (hidden * self.item_emb(positives)).sum(-1)  # [N] r_{o_t, t}
            neg = (hidden * self.item_emb(negatives)).sum(-1)  # [N] r_{j, t}
            # log(1 - sigmoid(r)) = log sigmoid(-r), computed without overflow
            return -(F.logsigmoid(pos) + F.logsigmoid(-neg)).mean()
        if kind == "ce":
            return F.cross_entropy(self.item_logits(hidden), positives)
        raise ValueError(f"loss {kind!r}: expected one of {LOSSES}")
