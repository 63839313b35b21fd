"""TIGER's sequence-to-sequence retrieval model (Rajput et al. 2023, Sec. 3.2).

    encoder input   [user token, c_1^0 c_1^1 c_1^2 c_1^3, c_2^0 ..., c_L^3]   (item i's semantic ID c_i;
                    with n_items > 0 each of its tokens also gets its item token, not the paper's; with
                    successor_token the user token also gets a free vector of the most recent item c_L)
    decoder input   [BOS, c^0, c^1, c^2]   (teacher forcing)
    decoder output  logits of c^0, c^1, c^2, c^3 of the next item

Shapes: B users, L history items, T = tokens per semantic ID (n_codebooks + 1
collision token), K = codebook size, S = 1 + L*T encoder tokens, D = d_model.

All positions (`causal_encoder=True`, train.all_positions; not the paper's). Per example, a user with n
training targets has the history encoded n times, once per target. Here a sequence (a window of one user's
items, data/windows.py) is encoded ONCE and every position p of it is a target, trained in the same pass:

    encoder   causal at item granularity: item i's T tokens see the user token and the tokens of items
              i - max_history + 1 .. i (itself included), never a later item
    decoder   target p's T tokens [BOS, c_p^0, c_p^1, c_p^2] cross-attend to the user token and the items
              p - max_history .. p - 1 only: its own prefix, within max_history, nothing of itself or after

so every item's encoding is the same for every target that reads it and can be shared. What this does not
bound: through the encoder's layers an item's encoding carries the max_history - 1 items before it, so in a
window longer than max_history + 1 items a target's oldest history items carry older items of the window
(up to the window's start: windows of 2 * max_history give up to max_history - 1 more), where per example that
context is cut. No one-pass design can avoid it: an encoding shared by several targets cannot depend on which
of them reads it. Within a sequence of at most max_history + 1 items nothing differs. Positions are then
relative (a learned bias per head and item distance, T5's relative position bias at item granularity)
instead of the paper-model's recency embedding, which would give an item another input for each target.
The same model reads a history per example too (beam search, validation): the target then follows the
whole history. Run per example on each prefix of a sequence (within max_history), it gives every target
exactly the loss the all-positions pass gives it (tests/modules/test_all_positions.py): one model, two ways
to train it. Why not a decoder-only model over the interleaved IDs: as fast at toy size, but it would need its
own inference (bench/results/all_positions_toy.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from modules.embedding import ItemIdEmbedder, SemIdEmbedder, UserIdEmbedder
from modules.transformer import Decoder, Encoder
from modules.transformer.dropout import use_packed_dropout

DROPOUT_MASKS = ("torch", "packed")  # whose masks the dropout layers draw in training


class EncoderDecoderRetrievalModel(nn.Module):
    def __init__(
        self,
        n_levels: int,
        codebook_size: int,
        max_history: int,
        *,  # the sizes have no defaults here: train_decoder.train()'s gin signature holds the paper's, once
        n_user_buckets: int,
        d_model: int,
        n_heads: int,
        d_head: int,
        ff_dim: int,
        n_encoder_layers: int,
        n_decoder_layers: int,
        dropout: float,
        # off by default: the paper's model, and checkpoints written before an option existed still build
        constrained_softmax: bool = False,
        n_items: int = 0,
        item_token_dropout: float = 0.0,
        causal_encoder: bool = False,
        history_bias: bool = False,
        history_bias_stop_gradient: bool = False,
        successor_token: bool = False,
        dropout_masks: str = "torch",
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
        if causal_encoder:  # recorded only when on: checkpoints written before it existed keep resuming
            self.kwargs["causal_encoder"] = True
        if history_bias:  # the same
            self.kwargs["history_bias"] = True
        if history_bias_stop_gradient:
            if not history_bias:
                raise ValueError("history_bias_stop_gradient=True needs history_bias=True (the logit it trains)")
            self.kwargs["history_bias_stop_gradient"] = True
        if successor_token:
            if not n_items or causal_encoder:
                raise ValueError("successor_token=True needs n_items > 0 (the catalogue) and the per-example encoder "
                                 "(causal_encoder=False: a window has no one most recent item)")
            self.kwargs["successor_token"] = True
        if dropout_masks not in DROPOUT_MASKS:
            raise ValueError(f"dropout_masks={dropout_masks!r}: one of {DROPOUT_MASKS}")
        if dropout_masks != "torch":  # recorded only when not torch's: older checkpoints keep resuming
            self.kwargs["dropout_masks"] = dropout_masks
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
        # True (not the paper's): a second free vector per item, added to the user token for the most recent
        # item only: one slot for "what follows this item" (studies/results/successor_token_rule.txt). Zero at
        # the start (the recipe's model); dropped with item_token_dropout in training, as item tokens are. Its
        # rows are item_emb's (found once there from the IDs): row n_items is padding, zeros.
        self.successor_emb = nn.Embedding(n_items + 1, d_model, padding_idx=n_items) if successor_token else None
        # False: the paper's encoder, every history token sees every other, with a learned embedding of how recent
        # the item a token belongs to is. True: all-positions training's causal encoder (module docstring), with
        # T5's relative position bias (Raffel et al. 2020, Sec. 2.1) at item granularity: per head, a learned scalar
        # per item distance (0 .. max_history - 1 in the encoder, 1 .. max_history from a target to its history
        # in the cross-attention), row max_history for the user token; zero at the start.
        self.causal_encoder = causal_encoder
        if causal_encoder:
            self.encoder_distance_bias = nn.Embedding(max_history + 1, n_heads)
            self.cross_distance_bias = nn.Embedding(max_history + 1, n_heads)
        else:
            self.item_pos_emb = nn.Embedding(max_history, d_model)  # how recent the item a token belongs to is
        # True (not the paper's): one learned logit per level, added to every code after which each completion
        # is an item of the user's history (SemanticIdTrie.blocked), in training and in beam search alike: the
        # model learns from its training targets how likely a repeat is (a repeat-or-explore score, as RepeatNet:
        # Ren et al., AAAI 2019), instead of a filter deciding it. Zero at the start: the paper's model.
        # Named *bias: no weight decay (runtime/optimizer.py).
        self.history_bias = nn.Parameter(torch.zeros(n_levels)) if history_bias else None
        # True: the logit is fitted to the model's detached scores, and the model's weights learn from their own
        # cross-entropy as if there were no logit (loss()): the model stays the one the recipe trains, history
        # items included as the hard negatives its softmax pushes down; only the ranking adds the logit.
        self.history_bias_stop_gradient = history_bias_stop_gradient
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
        if self.successor_emb is not None:
            nn.init.zeros_(self.successor_emb.weight)  # zeros: the recipe's model at the start
        if causal_encoder:  # every distance alike at the start, as T5's content-only attention
            nn.init.zeros_(self.encoder_distance_bias.weight)
            nn.init.zeros_(self.cross_distance_bias.weight)
        # "packed" (not the paper's): the dropout layers' masks drawn four to a 64-bit random word, a cheaper
        # CPU step with the same distribution (modules/transformer/dropout.py); "torch": nn.Dropout's.
        if dropout_masks == "packed":
            use_packed_dropout(self)

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
        """user_ids [B], history [B, L, T] codes (oldest first, right-padded with -1) -> memory [B, S, D] and
        the decoder's mask of it: padding [B, S] (True = padding), or with the causal encoder the cross-attention
        bias [B, H, 1, S] of the item after the history (cross_bias). The causal encoder reads any L (a training
        window may hold more than max_history items: each still sees max_history of them). A user id of -1 means
        no user (a history asked about on its own, serving/): the user token is then masked like padding (the
        causal encoder, which has no padding mask, reads a zero vector there), so the model reads the history
        alone rather than some hashed bucket's users."""
        B, L, T = history.shape
        if T != self.n_levels or (L > self.max_history and not self.causal_encoder):
            raise ValueError(f"history of shape {tuple(history.shape)} does not fit a model with "
                             f"max_history={self.max_history}, n_levels={self.n_levels}")
        levels = torch.arange(T, device=history.device)
        x = self.sem_id_emb(self.sem_id_emb.tokens(history, levels)) + self.level_emb(levels)
        if not self.causal_encoder:
            x = x + rearrange(self.item_pos_emb(recency_positions(history)), "b l d -> b l 1 d")
        if self.item_emb is not None:
            items = self.item_emb(history)  # [B, L, D]; padding items: masked below
            if self.training and self.item_token_dropout > 0:
                items = items * (torch.rand(B, L, 1, device=items.device) >= self.item_token_dropout)
            x = x + rearrange(items, "b l d -> b l 1 d")
        user, no_user = self.user_emb(user_ids), user_ids < 0  # [B, D], [B]
        if self.successor_emb is not None:
            n_real = (history[..., 0] >= 0).sum(dim=1)  # [B]
            last = history[torch.arange(B, device=history.device), (n_real - 1).clamp(min=0)]  # [B, T]
            successor = self.successor_emb(self.item_emb.rows(last))  # [B, D]; no history: the padding row (zeros)
            if self.training and self.item_token_dropout > 0:
                successor = successor * (torch.rand(B, 1, device=successor.device) >= self.item_token_dropout)
            user = user * rearrange(~no_user, "b -> b 1") + successor  # no user: the successor alone
            no_user = no_user & (n_real == 0)  # the first token then holds the most recent item's vector: kept
        x = torch.cat([rearrange(user, "b d -> b 1 d"), rearrange(x, "b l t d -> b (l t) d")], dim=1)
        if self.causal_encoder:
            # Right padding: a real token never sees a padded one (all come after it), so no padding mask.
            x[:, 0] = x[:, 0] * rearrange(user_ids >= 0, "b -> b 1")  # no user: a zero user token
            memory = self.encoder(self.drop(x), None, attn_bias=self.encoder_bias(L, T, history.device))
            n_real = (history[..., 0] >= 0).sum(dim=1)  # [B]: the next item's position in the sequence
            return memory, self.cross_bias(rearrange(n_real, "b -> b 1"), L, T)
        padding = torch.cat([rearrange(no_user, "b -> b 1"), rearrange(history < 0, "b l t -> b (l t)")], dim=1)
        return self.encoder(self.drop(x), padding), padding

    def encoder_bias(self, L: int, T: int, device: torch.device) -> Tensor:
        """The causal encoder's self-attention mask and position bias [1, H, S, S] for L items of T tokens:
        item i's tokens see the user token and items i - max_history + 1 .. i, biased by their distance."""
        item = memory_items(L, T, device)                               # [S]
        distance = rearrange(item, "q -> q 1") - rearrange(item, "k -> 1 k")  # [S, S] query item - key item
        user = rearrange(item < 0, "k -> 1 k")
        seen = user | ((distance >= 0) & (distance < self.max_history))
        bucket = torch.where(user, self.max_history, distance.clamp(0, self.max_history - 1))
        bias = rearrange(self.encoder_distance_bias(bucket), "q k h -> 1 h q k").contiguous()  # GPU kernels want stride 1
        return bias.masked_fill(~seen, float("-inf"))

    def cross_bias(self, targets: Tensor, L: int, T: int) -> Tensor:
        """targets [R, N] the sequence position of each target (its history: the items before it) -> the
        cross-attention mask and position bias [R, H, N, S] over a memory of L items: target p sees the user
        token and items p - max_history .. p - 1, biased by their distance p - j."""
        item = memory_items(L, T, targets.device)                       # [S]
        distance = rearrange(targets, "r n -> r n 1") - item            # [R, N, S]
        user = item < 0
        seen = user | ((distance >= 1) & (distance <= self.max_history))
        bucket = torch.where(user, self.max_history, (distance - 1).clamp(0, self.max_history - 1))
        bias = rearrange(self.cross_distance_bias(bucket), "r n s h -> r h n s").contiguous()
        return bias.masked_fill(rearrange(~seen, "r n s -> r 1 n s"), float("-inf"))

    def decoder_input(self, target: Tensor) -> Tensor:
        """target [B, T] codes -> decoder input tokens [B, T] = [BOS, c^0, ..., c^{T-2}] (teacher forcing)."""
        levels = torch.arange(self.n_levels - 1, device=target.device)
        bos = torch.full_like(target[:, :1], self.sem_id_emb.bos_token)
        return torch.cat([bos, self.sem_id_emb.tokens(target[:, :-1], levels)], dim=1)

    def decode(self, tokens: Tensor, memory: Tensor | None, padding: Tensor, cache: list[dict] | None = None, start: int = 0) -> Tensor:
        """tokens [B, N] at decoder positions start..start+N-1 -> logits [B, N, K] over each position's level.

        With `cache` (from `new_cache()`), pass one new token per call; `memory` may then be
        None after the first call (the cross-attention keys/values are cached). `padding` is encode()'s mask of
        the memory: padding [B, S], or with the causal encoder the cross-attention bias [B|1, H, N|1, S]
        (with more query rows than memory rows, as beams or all-positions targets: MultiHeadAttention)."""
        N = tokens.shape[1]
        positions = torch.arange(start, start + N, device=tokens.device)
        x = self.sem_id_emb(tokens) + self.decoder_pos_emb(positions)
        padding, bias = (None, padding) if self.causal_encoder else (padding, None)  # encode()'s mask, either kind
        h = self.decoder(self.drop(x), memory, padding, cache, memory_bias=bias)
        return torch.einsum("bnd,nkd->bnk", h, self.head[start:start + N])

    def new_cache(self) -> list[dict]:
        return [{} for _ in self.decoder.layers]

    def forward(self, user_ids: Tensor, history: Tensor, target: Tensor,
                negative: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Teacher-forced logits [B, T, K] of the target semantic IDs target [B, T] (the item after each history).
        All positions (causal encoder): history [B, W, T] a sequence, target [B, W, T] the same items where
        position p is a trained target, -1 elsewhere -> logits [B, W, T, K], target p seen from items < p.
        With `negative` (the shape of target, -1 where none; history_unlikelihood) -> (logits, the negatives'
        logits): each negative decoded as if it were its target, from the same encoder pass."""
        memory, mask = self.encode(user_ids, history)
        if target.dim() == 2:
            if negative is None:
                return self.decode(self.decoder_input(target), memory, mask)
            # Each user's target and negative read the one memory row as two beams do (MultiHeadAttention).
            tokens = self.decoder_input(rearrange(torch.stack([target, negative], 1), "b two t -> (b two) t"))
            logits = rearrange(self.decode(tokens, memory, mask), "(b two) t k -> two b t k", two=2)
            return logits[0], logits[1]
        if not self.causal_encoder:
            raise ValueError("all-positions targets [B, W, T] need a model with causal_encoder=True")
        B, W, T = target.shape
        positions = torch.arange(W, device=target.device)
        if negative is not None:  # more target rows, each at its target's position
            target, positions = torch.cat([target, negative], dim=1), positions.repeat(2)
        # Every position's target reads the one memory, as beam search's beams do (MultiHeadAttention), each
        # through its own prefix: the cross-attention mask of target p, repeated for its T decoder tokens.
        bias = repeat(self.cross_bias(rearrange(positions, "w -> 1 w"), W, T),
                      "1 h w s -> 1 h (w t) s", t=T)                   # [1, H, rows*T, S]
        tokens = self.decoder_input(rearrange(target, "b w t -> (b w) t"))  # -1 (not a target): padding tokens
        logits = rearrange(self.decode(tokens, memory, bias), "(b w) t k -> b w t k", b=B)  # [B, rows, T, K]
        return logits if negative is None else (logits[:, :W], logits[:, W:])

    def level_nll(self, logits: Tensor, target: Tensor, valid: Tensor | None = None,
                  blocked: Tensor | None = None) -> Tensor:
        """logits [B, T, K], target [B, T] -> [B, T] cross-entropy of each target token (all positions: logits
        [B, W, T, K], target [B, W, T] -> [B, W, T], 0 where the target is -1). valid [..., T, K]
        (SemanticIdTrie.path_masks of the targets) is required when constrained_softmax is on; blocked [B, T, K]
        (SemanticIdTrie.path_blocked of the targets and the history's items) when history_bias is."""
        logits = logits.float()
        if self.history_bias is not None:
            if blocked is None:
                raise ValueError("a model with history_bias needs the targets' history masks (trie.path_blocked)")
            logits = logits + rearrange(self.history_bias, "t -> t 1") * blocked
        return self._code_nll(logits, target, valid)

    def _code_nll(self, logits: Tensor, target: Tensor, valid: Tensor | None) -> Tensor:
        """level_nll's cross-entropy of float logits, after any history logit is added."""
        if self.constrained_softmax:
            if valid is None:
                raise ValueError("a model with constrained_softmax needs the targets' valid-code masks (trie.path_masks)")
            logits = logits.masked_fill(~(valid | (target < 0)[..., None]), float("-inf"))  # not a target: no -inf row
        return F.cross_entropy(rearrange(logits, "b ... k -> b k ..."), target, ignore_index=-1, reduction="none")

    def loss(self, logits: Tensor, target: Tensor, valid: Tensor | None = None, blocked: Tensor | None = None) -> Tensor:
        """Mean cross-entropy over the target tokens (Sec. 3.2: next-token prediction of the ID): the B*T of
        [B, T] targets, or in all-positions mode those of the trained positions (each target's T tokens)."""
        if self.history_bias_stop_gradient:
            # The value and the weights' gradient: the model's own cross-entropy, without the logit (the recipe's
            # to the bit). The logit's gradient: the cross-entropy with it, of the detached scores, added as
            # (x - sg(x)), zero in value.
            with_logit = self.level_nll(logits.detach(), target, valid, blocked)
            nll = self._code_nll(logits.float(), target, valid) + (with_logit - with_logit.detach())
        else:
            nll = self.level_nll(logits, target, valid, blocked)
        return nll.mean() if target.dim() == 2 else nll.sum() / (target >= 0).sum()

    def history_unlikelihood(self, logits: Tensor, negative: Tensor, valid: Tensor | None = None) -> Tensor:
        """Mean unlikelihood -log(1 - p(n)) of the negative items' whole semantic IDs (Welleck et al. 2020,
        "Neural text generation with unlikelihood training", applied to an ID): logits [..., T, K] teacher-forced
        on negative [..., T] (-1: no negative there; forward(..., negative)), valid its trie masks. p(n) is the
        product of n's per-level probabilities, the probability beam search ranks n by."""
        log_p = -self.level_nll(logits, negative, valid).sum(dim=-1)             # [...]; 0 where no negative
        has = negative[..., 0] >= 0
        unlikely = -torch.log1p(-log_p.exp().clamp(max=1 - 1e-6))               # [...]
        return (unlikely * has).sum() / has.sum().clamp(min=1)


def previous_items(history: Tensor, target: Tensor) -> Tensor:
    """The item just before each target, a negative for history_unlikelihood: the last item of its history,
    the one a model most readily generates again though a user meets an item once. Per example: history
    [B, L, T] (right-padded), target [B, T] -> [B, T]. All positions: history, target [B, W, T] (-1 where no
    target) -> [B, W, T]. -1 where there is none (no history, no target) or it is the target itself."""
    if target.dim() == 2:
        n_real = (history[..., 0] >= 0).sum(dim=1)                                     # [B]
        before = history[torch.arange(len(history), device=history.device), (n_real - 1).clamp(min=0)]
        before = before.masked_fill(rearrange(n_real == 0, "b -> b 1"), -1)
    else:
        before = torch.cat([torch.full_like(history[:, :1], -1), history[:, :-1]], dim=1)  # [B, W, T]
    keep = (target[..., :1] >= 0) & (before[..., :1] >= 0) & ~(before == target).all(dim=-1, keepdim=True)
    return torch.where(keep, before, torch.full_like(before, -1))


def memory_items(L: int, T: int, device: torch.device) -> Tensor:
    """[S = 1 + L*T]: the history item each encoder token belongs to, -1 for the user token, then 0 .. L-1 T times each."""
    return torch.cat([torch.full((1,), -1, device=device), torch.arange(L, device=device).repeat_interleave(T)])


def recency_positions(history: Tensor) -> Tensor:
    """history [B, L, T] (oldest first, right-padded with -1) -> [B, L]: 0 for each user's most
    recent item, 1 for the one before, ... (padding gets 0; it is masked anyway).

    Counting from the end puts the item that matters most for the next one at the same
    position for every user, whatever the history's length or padding; counted from the
    start, the model would first have to find where each history ends."""
    L = history.shape[1]
    n_items = (history[..., 0] >= 0).sum(dim=1, keepdim=True)  # [B, 1]
    return (n_items - 1 - torch.arange(L, device=history.device)).clamp(min=0)

