"""Pre-norm transformer blocks and stacks (T5-style, as in the paper's T5X models).

Pre-norm (x + f(norm(x))) keeps training stable without a long warm-up; each stack
ends with a final norm since the residual stream itself is never normalised.
"""
from __future__ import annotations

from torch import Tensor, nn

from modules.transformer.attention import MultiHeadAttention


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, ff_dim: int, dropout: float) -> None:
        super().__init__(nn.Linear(d_model, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model))


class EncoderBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_head: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm_attn, self.norm_ff = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, d_head, dropout)
        self.ff = FeedForward(d_model, ff_dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None, attn_bias: Tensor | None = None) -> Tensor:
        x = x + self.drop(self.attn(self.norm_attn(x), key_padding_mask=key_padding_mask, attn_bias=attn_bias))
        return x + self.drop(self.ff(self.norm_ff(x)))


class DecoderBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_head: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm_self, self.norm_cross, self.norm_ff = (nn.LayerNorm(d_model) for _ in range(3))
        self.self_attn = MultiHeadAttention(d_model, n_heads, d_head, dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, d_head, dropout, cross=True)
        self.ff = FeedForward(d_model, ff_dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor | None, memory_padding_mask: Tensor | None, cache: dict | None = None,
                memory_bias: Tensor | None = None) -> Tensor:
        self_cache = cross_cache = None
        if cache is not None:
            self_cache, cross_cache = cache.setdefault("self", {}), cache.setdefault("cross", {})
        x = x + self.drop(self.self_attn(self.norm_self(x), causal=True, cache=self_cache))
        x = x + self.drop(self.cross_attn(self.norm_cross(x), context=memory, key_padding_mask=memory_padding_mask,
                                          cache=cross_cache, attn_bias=memory_bias))
        return x + self.drop(self.ff(self.norm_ff(x)))


class Encoder(nn.Module):
    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_head: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderBlock(d_model, n_heads, d_head, ff_dim, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None, attn_bias: Tensor | None = None) -> Tensor:
        """x [B, S, D] -> [B, S, D]; attn_bias [B|1, H, S, S] (additive, -inf = never attended), shared by the layers."""
        for layer in self.layers:
            x = layer(x, key_padding_mask, attn_bias)
        return self.norm(x)


class Decoder(nn.Module):
    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_head: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderBlock(d_model, n_heads, d_head, ff_dim, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, memory: Tensor | None, memory_padding_mask: Tensor | None, cache: list[dict] | None = None,
                memory_bias: Tensor | None = None) -> Tensor:
        """x [B, N, D]: the whole target prefix, or with `cache` (one dict per layer) only the new token.
        memory_bias: the cross-attention's additive mask, shared by the layers (MultiHeadAttention's attn_bias)."""
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, memory_padding_mask, None if cache is None else cache[i], memory_bias)
        return self.norm(x)
