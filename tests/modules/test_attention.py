import math

import torch

from modules.transformer import Decoder, Encoder, MultiHeadAttention


def naive_attention(attn: MultiHeadAttention, x, context, key_padding_mask, causal):
    """Textbook softmax(QK^T / sqrt(d)) V with explicit masks: the oracle for the SDPA path."""
    H = attn.n_heads
    q = attn.to_q(x)
    k, v = attn.to_kv(context if attn.cross else x).chunk(2, dim=-1)
    split = lambda t: t.view(t.shape[0], t.shape[1], H, -1).transpose(1, 2)
    q, k, v = map(split, (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    if causal:
        n = x.shape[1]
        scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    out = scores.softmax(-1) @ v
    return attn.to_out(out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))


def test_attention_matches_naive_with_padding_and_causal_masks():
    torch.manual_seed(0)
    x, ctx = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[0, 4:] = True
    pad[2, 1:] = True
    self_attn = MultiHeadAttention(16, 3, 8).eval()
    cross_attn = MultiHeadAttention(16, 3, 8, cross=True).eval()
    torch.testing.assert_close(self_attn(x, causal=True), naive_attention(self_attn, x, None, None, True))
    torch.testing.assert_close(self_attn(ctx, key_padding_mask=pad), naive_attention(self_attn, ctx, None, pad, False))
    torch.testing.assert_close(cross_attn(x, context=ctx, key_padding_mask=pad), naive_attention(cross_attn, x, ctx, pad, False))


def test_extra_padding_does_not_change_encoder_outputs():
    torch.manual_seed(0)
    enc = Encoder(2, 16, 2, 8, 32, dropout=0.1).eval()
    x = torch.randn(2, 6, 16)
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    # Append three more padding tokens holding garbage: real positions must not see them.
    x_long = torch.cat([x, 100 * torch.randn(2, 3, 16)], dim=1)
    pad_long = torch.cat([pad, torch.ones(2, 3, dtype=torch.bool)], dim=1)
    out, out_long = enc(x, pad), enc(x_long, pad_long)
    torch.testing.assert_close(out[~pad], out_long[:, :6][~pad], atol=1e-5, rtol=1e-5)


def test_decoder_with_cache_equals_decoder_without():
    torch.manual_seed(0)
    dec = Decoder(3, 16, 2, 8, 32, dropout=0.1).eval()
    x, memory = torch.randn(2, 4, 16), torch.randn(2, 5, 16)
    pad = torch.tensor([[False] * 5, [False, False, True, True, True]])
    full = dec(x, memory, pad)
    cache = [{} for _ in dec.layers]
    steps = [dec(x[:, i:i + 1], memory if i == 0 else None, pad, cache) for i in range(4)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
