"""TIGER's sequence-to-sequence retrieval model (Rajput et al. 2023, Sec. 3.2).

    encoder input   [user token, c_1^0 c_1^1 c_1^2 c_1^3, c_2^0 ..., c_L^3]   (item i's semantic ID c_i;
                    with n_items > 0 each of its tokens also gets its item token, not the paper's)
    decoder input   [BOS, c^0, c^1, c^2]   (teacher forcing)
    decoder output  logits of c^0, c^1, c^2, c^3 of the next item

Shapes: B users, L history items, T = tokens per semantic ID (n_codebooks + 1
collision token), K = codebook size, S = 1 + L*T encoder tokens, D = d_model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from modules.embedding import ItemIdEmbedder, SemIdEmbedder, UserIdEmbedder
from modules.transformer import Decoder, Encoder


class EncoderDecoderRetrievalModel(nn.Module):
    def __init__(
        self,
        n_levels: int,
        codebook_size: int,
        max_history: int,
        n_user_buckets: int = 2000,
        d_model: int = 128,
        n_heads: int = 6,
        d_head: int = 64,
        ff_dim: int = 1024,
        n_encoder_layers: int = 4,
        n_decoder_layers: int = 4,
        dropout: float = 0.1,
        constrained_softmax: bool = False,
        n_items: int = 0,
        item_token_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        # Kept so a checkpoint can rebuild the model without the gin file.
        self.kwargs = dict(
            n_levels=n_levels, codebook_size=codebook_size, max_history=max_history, n_user_buckets=n_user_buckets,
            d_model=d_model, n_heads=n_heads, d_head=d_head, ff_dim=ff_dim,
            n_encoder_layers=n_encoder_layers, n_decoder_layers=n_decoder_layers, dropout=dropout,
            constrained_softmax=constrained_softmax, n_items=n_items,
            item_token_dropout=item_token_dropout,
        )
        # True: each position's softmax runs over the codes that extend the prefix to an existing item's ID
        # only (in training, teacher-forced along the target's own prefix; in beam search, along each beam's),
        # so the model's scores are log-probabilities over the catalogue's items and it need not spend
        # its training learning which code combinations exist. False: the paper's softmax over all K codes
        # (beam search then masks invalid codes after the softmax).
        self.constrained_softmax = constrained_softmax
        self.n_levels, self.codebook_size, self.max_history = n_levels, codebook_size, max_history
        self.sem_id_emb = SemIdEmbedder(n_levels, codebook_size, d_model)
        self.user_emb = UserIdEmbedder(n_user_buckets, d_model)
        # 0: the paper's encoder, items seen through their codes only. n_items (the catalogue's size): each
        # history item's tokens also get a free vector of that item, room to memorise item-to-item
        # transitions; its rows are found from the IDs once item_emb.index(sem_ids) has seen the catalogue.
        self.item_emb = ItemIdEmbedder(n_items, codebook_size, d_model) if n_items else None
        # In training, each history item loses its item token with this probability (not rescaled: the item is
        # then seen through its codes alone), so the code pathway that generalises to unseen pairs keeps
        # learning instead of leaning on the memorised shortcut (DropoutNet, Volkovs et al., NeurIPS 2017).
        self.item_token_dropout = item_token_dropout
        self.item_pos_emb = nn.Embedding(max_history, d_model)  # how recent the item a token belongs to is
        self.level_emb = nn.Embedding(n_levels, d_model)        # which of the item's T tokens it is
        self.decoder_pos_emb = nn.Embedding(n_levels, d_model)
        self.encoder = Encoder(n_encoder_layers, d_model, n_heads, d_head, ff_dim, dropout)
        self.decoder = Decoder(n_decoder_layers, d_model, n_heads, d_head, ff_dim, dropout)
        self.drop = nn.Dropout(dropout)
        # One output head per decoder position, over its own level's K codes only: position t
        # can only emit a level-t token, so the other levels' logits would just be wasted mass.
        self.head = nn.Parameter(torch.empty(n_levels, codebook_size, d_model))
        self.apply(self._init)
        nn.init.normal_(self.head, std=d_model ** -0.5)  # a linear map from d_model: fan-in scaled too
        if self.item_emb is not None:
            self.item_emb.reset_parameters()  # zeros: an item starts as its codes, as in the paper

    @staticmethod
    def _init(m: nn.Module) -> None:
        # T5's initialisation (Raffel et al. 2020, the Mesh TensorFlow defaults the paper's T5X models use):
        # embeddings N(0, 1), every linear map N(0, 1/fan_in), so every layer's output starts at unit scale
        # whatever d_model. GPT-2's fixed std 0.02 is ~1/sqrt(d_model) only for d_model ~ 2,500: at
        # d_model 64-128 it makes attention logits ~0.03, i.e. uniform attention over the whole history,
        # and stage 2 then spends thousands of steps predicting the same items for everyone before
        # its cross-attention learns to look at the most recent items (studies/results/decoder_study_beauty.md).
        if isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=1.0)
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=m.in_features ** -0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def encode(self, user_ids: Tensor, history: Tensor) -> tuple[Tensor, Tensor]:
        """user_ids [B], history [B, L, T] codes (-1 = padding item) -> memory [B, S, D], padding mask [B, S].
        A user id of -1 means no user (a history asked about on its own, serving/): the user token is then
        masked like padding, so the model reads the history alone rather than some hashed bucket's users."""
        B, L, T = history.shape
        if T != self.n_levels or L > self.max_history:
            raise ValueError(f"history of shape {tuple(history.shape)} does not fit a model with "
                             f"max_history={self.max_history}, n_levels={self.n_levels}")
        levels = torch.arange(T, device=history.device)
        x = (self.sem_id_emb(self.sem_id_emb.tokens(history, levels))
             + rearrange(self.item_pos_emb(recency_positions(history)), "b l d -> b l 1 d")
             + self.level_emb(levels))
        if self.item_emb is not None:
            items = self.item_emb(history)  # [B, L, D]; padding items: masked below
            if self.training and self.item_token_dropout > 0:
                items = items * (torch.rand(B, L, 1, device=items.device) >= self.item_token_dropout)
            x = x + rearrange(items, "b l d -> b l 1 d")
        x = torch.cat([rearrange(self.user_emb(user_ids), "b d -> b 1 d"), rearrange(x, "b l t d -> b (l t) d")], dim=1)
        padding = torch.cat([rearrange(user_ids < 0, "b -> b 1"), rearrange(history < 0, "b l t -> b (l t)")], dim=1)
        return self.encoder(self.drop(x), padding), padding

    def decoder_input(self, target: Tensor) -> Tensor:
        """target [B, T] codes -> decoder input tokens [B, T] = [BOS, c^0, ..., c^{T-2}] (teacher forcing)."""
        levels = torch.arange(self.n_levels - 1, device=target.device)
        bos = torch.full_like(target[:, :1], self.sem_id_emb.bos_token)
        return torch.cat([bos, self.sem_id_emb.tokens(target[:, :-1], levels)], dim=1)

    def decode(self, tokens: Tensor, memory: Tensor | None, padding: Tensor, cache: list[dict] | None = None, start: int = 0) -> Tensor:
        """tokens [B, N] at decoder positions start..start+N-1 -> logits [B, N, K] over each position's level.

        With `cache` (from `new_cache()`), pass one new token per call; `memory` may then be
        None after the first call (the cross-attention keys/values are cached)."""
        N = tokens.shape[1]
        positions = torch.arange(start, start + N, device=tokens.device)
        x = self.sem_id_emb(tokens) + self.decoder_pos_emb(positions)
        h = self.decoder(self.drop(x), memory, padding, cache)
        return torch.einsum("bnd,nkd->bnk", h, self.head[start:start + N])

    def new_cache(self) -> list[dict]:
        return [{} for _ in self.decoder.layers]

    def forward(self, user_ids: Tensor, history: Tensor, target: Tensor) -> Tensor:
        """Teacher-forced logits [B, T, K] of the target semantic IDs target [B, T]."""
        memory, padding = self.encode(user_ids, history)
        return self.decode(self.decoder_input(target), memory, padding)

    def level_nll(self, logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
        """logits [B, T, K], target [B, T] -> [B, T] cross-entropy of each target token. valid [B, T, K]
        (SemanticIdTrie.path_masks of the targets) is required when constrained_softmax is on."""
        logits = logits.float()
        if self.constrained_softmax:
            if valid is None:
                raise ValueError("a model with constrained_softmax needs the targets' valid-code masks (trie.path_masks)")
            logits = logits.masked_fill(~valid, float("-inf"))
        return F.cross_entropy(rearrange(logits, "b t k -> b k t"), target, reduction="none")

    def loss(self, logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
        """Mean cross-entropy over the B*T target tokens (Sec. 3.2: next-token prediction of the ID)."""
        return self.level_nll(logits, target, valid).mean()


def recency_positions(history: Tensor) -> Tensor:
    """history [B, L, T] (oldest first, right-padded with -1) -> [B, L]: 0 for each user's most
    recent item, 1 for the one before, ... (padding gets 0; it is masked anyway).

    Counting from the end puts the item that matters most for the next one at the same
    position for every user, whatever the history's length or padding; counted from the
    start, the model would first have to find where each history ends."""
    L = history.shape[1]
    n_items = (history[..., 0] >= 0).sum(dim=1, keepdim=True)  # [B, 1]
    return (n_items - 1 - torch.arange(L, device=history.device)).clamp(min=0)

