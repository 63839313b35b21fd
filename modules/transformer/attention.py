"""Multi-head attention on top of F.scaled_dot_product_attention.

One module serves the three uses of an encoder-decoder transformer:
    encoder self-attention   x [B, S, D], key padding mask [B, S] (True = padding)
    decoder self-attention   causal; with a cache, x holds only the new tokens
    decoder cross-attention  context = encoder output [B, S, D], same padding mask
An additive `attn_bias` (float, -inf = never attended) takes any other mask, with learned position biases
in it: the causal encoder's item-causal mask and the all-positions decoder's per-target view of the
memory (modules/model.py).
The cache (a dict per module, filled in place) is what makes beam search cheap: the
decoder's past keys/values are appended step by step, the cross-attention
keys/values of the encoder output are computed once, per user: the W beams of a user
(queries [B * W, ...], user-major) read their user's keys/values as W query rows, so
nothing of size B * W * S is stored (all-positions training reads one memory the same way: the W targets of
a sequence are its "beams") (at S = 801 MovieLens tokens and W = 10 that copy
was ~98 MB per user, fp32).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_head: int, dropout: float = 0.0, cross: bool = False) -> None:
        super().__init__()
        self.n_heads, self.cross, self.dropout = n_heads, cross, dropout
        inner = n_heads * d_head  # the paper's 6 heads of 64 need not equal d_model = 128
        self.to_q = nn.Linear(d_model, inner, bias=False)
        self.to_kv = nn.Linear(d_model, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, d_model, bias=False)

    def forward(
        self,
        x: Tensor,                                # [B, N, D] queries (and keys/values unless cross)
        context: Tensor | None = None,            # [B, S, D] encoder output, cross-attention only
        key_padding_mask: Tensor | None = None,   # [B, S] bool, True = padding, never attended to
        causal: bool = False,
        cache: dict | None = None,                # filled in place: {"k": [B, H, S, Dh], "v": ...}
        attn_bias: Tensor | None = None,          # [B|1, H|1, N|1, S] float added to the scores, -inf = never
                                                  # attended; with beams, N counts the query rows (w n)
    ) -> Tensor:
        heads = lambda t: rearrange(t, "b n (h d) -> b h n d", h=self.n_heads)
        q = heads(self.to_q(x))
        if self.cross:
            if cache is not None and "k" in cache:  # the encoder output does not change while decoding
                k, v = cache["k"], cache["v"]
            else:
                if context is None:
                    raise ValueError("cross-attention needs the encoder output (context) or a filled cache")
                k, v = map(heads, self.to_kv(context).chunk(2, dim=-1))
                if cache is not None:
                    cache["k"], cache["v"] = k, v
        else:
            k, v = map(heads, self.to_kv(x).chunk(2, dim=-1))
            if cache is not None:
                if "k" in cache:
                    if causal and x.shape[1] > 1:
                        raise ValueError("a cached causal step takes one new token at a time")
                    k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
                    causal = False  # one new query sees every cached key: no mask needed
                cache["k"], cache["v"] = k, v

        if causal and (key_padding_mask is not None or attn_bias is not None):
            raise ValueError("causal attention with a padding mask or a bias is not used by this model")
        attn_mask = None
        if key_padding_mask is not None:
            attn_mask = rearrange(~key_padding_mask, "b s -> b 1 1 s")  # True = may attend
        if attn_bias is not None:
            attn_mask = attn_bias.to(q.dtype) if attn_mask is None else attn_bias.to(q.dtype).masked_fill(~attn_mask, float("-inf"))
        beams = q.shape[0] // k.shape[0]  # > 1 only in beam search's cross-attention: B users, B * W beams
        if beams > 1:
            q = rearrange(q, "(b w) h n d -> b h (w n) d", w=beams)  # each beam: query rows of its user
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=causal,
            dropout_p=self.dropout if self.training else 0.0,
        )
        if beams > 1:
            out = rearrange(out, "b h (w n) d -> (b w) h n d", w=beams)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))
