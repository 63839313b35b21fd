"""Per example vs all positions: training targets per CPU-second at toy size, on synthetic MovieLens-like
sequences (not a test; not a real-size measurement).

    python -m bench.all_positions [--users 256] [--steps 8] [--json FILE]

Why all positions, and which of the two known designs (issue 34). Per example, a user with n ratings is
n - 3 training examples, each encoding its own copy of up to max_seq_len = 200 items (801 tokens): the
history is paid for once per target. In one causal pass it is paid for once per window. Two designs:

  A  causal encoder-decoder (modules/model.py, causal_encoder=True; what train.all_positions trains): the
     encoder is causal at item granularity, each target's decoder cross-attends to its own prefix only.
  B  decoder-only over the interleaved semantic-ID tokens [user, c_1^0 .. c_1^3, c_2^0 ..]: each token
     predicts the next one (SASRec/HSTU-style at token granularity).

Per window of n items both run about the same work: A's encoder over 1 + 4n tokens, then its decoder's
4n query tokens cross-attending to them (attention ~(4n)^2, as B's self-attention); B runs its
(encoder + decoder) layers over the same 1 + 4n tokens. This script times both passes, B as a stand-in of
equal depth (modules.transformer.Encoder with a token-causal mask and per-level output heads: its training
pass, nothing of its inference). A is chosen because, at the same training cost, it keeps the paper's
encoder-decoder and everything downstream of it: beam search, the trie, validation and evaluate.py read it
exactly as they read the paper's model (the target after the whole history is one more prefix), and
trained per example on each prefix it is the same model (tests/modules/test_all_positions.py). B would need
its own inference (a prefix cache shared by the beams) and is a larger departure from the paper.

Data: users with 20 + a log-normal of ratings, as bench/make_movielens_standin.py draws MovieLens 32M's
(scaled to its mean, 159 per user), random items of a random 4-token catalogue; max_seq_len 200. Model:
the laptop recipe's size (configs/decoder_amazon_cpu.gin: 2 + 2 layers, d_model 64, 2 heads of 32, MLP
256, dropout 0.1; the all-positions model adds its two distance-bias tables). Each mode trains random
batches of one epoch's order through train_decoder.train_step (B: its own loss and the same optimiser),
one torch thread; throughput = targets trained / CPU seconds of this process (user + system), which a
busy machine inflates less than wall time. The timed batches of each mode are `--steps` batches of one
epoch at evenly spaced quantiles of their length (a batch's cost varies tenfold with it). Modes:

  per example, padded       decoder_ml32m.gin's batches: random examples, histories padded to 200 items
  per example, bucketed     the same, length-bucketed and trimmed (train.bucket_by_length)
  all positions (A)         windows of at most 400 items (data/windows.py), bucketed and trimmed
  decoder-only pass (B)     the same windows through the stand-in
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

import train_decoder
from bench.make_movielens_standin import user_activity
from bench.results_file import write_json
from data.batching import length_bucketed_batches, n_targets, sem_id_batch, trim_history, window_sem_id_batch
from data.splits import gather_histories, leave_one_out
from data.windows import cut_windows, gather_windows
from modules.embedding import SemIdEmbedder, UserIdEmbedder
from modules.semantic_id_trie import SemanticIdTrie
from modules.transformer import Encoder
from runtime.optimizer import build_optimizer

MAX_SEQ_LEN, N_LEVELS, CODEBOOK_SIZE, N_ITEMS = 200, 4, 256, 5_000
MEAN_RATINGS = 159  # MovieLens 32M: 32,000,204 ratings / 200,948 users
MODEL = {"n_user_buckets": 2000, "d_model": 64, "n_heads": 2, "d_head": 32, "ff_dim": 256, "n_encoder_layers": 2,
         "n_decoder_layers": 2, "dropout": 0.1, "constrained_softmax": True, "item_tokens": False,
         "item_token_dropout": 0.0, "history_bias": False, "history_bias_stop_gradient": False,
         "successor_token": False, "dropout_masks": "torch"}


class DecoderOnlyStandIn(nn.Module):
    """Design B's training pass, for timing: [user, c_1^0, .., c_n^3] through n_layers token-causal blocks,
    each position scoring the next token's level's codes; loss on the tokens of the window's targets."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_head: int, ff_dim: int, dropout: float,
                 n_user_buckets: int) -> None:
        super().__init__()
        self.sem_id_emb = SemIdEmbedder(N_LEVELS, CODEBOOK_SIZE, d_model)
        self.user_emb = UserIdEmbedder(n_user_buckets, d_model)
        self.level_emb = nn.Embedding(N_LEVELS, d_model)
        self.pos_emb = nn.Embedding(2 * MAX_SEQ_LEN, d_model)  # item position in the window
        self.stack = Encoder(n_layers, d_model, n_heads, d_head, ff_dim, dropout)
        self.head = nn.Parameter(torch.randn(N_LEVELS, CODEBOOK_SIZE, d_model) * d_model ** -0.5)

    def loss(self, user_ids: torch.Tensor, history: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        B, W, T = history.shape
        levels = torch.arange(T)
        x = (self.sem_id_emb(self.sem_id_emb.tokens(history, levels)) + self.level_emb(levels)
             + rearrange(self.pos_emb(torch.arange(W)), "w d -> w 1 d"))
        x = torch.cat([rearrange(self.user_emb(user_ids), "b d -> b 1 d"), rearrange(x, "b w t d -> b (w t) d")], dim=1)
        S = x.shape[1]
        causal = torch.full((S, S), float("-inf")).triu(1)[None, None]  # [1, 1, S, S]
        h = self.stack(x, None, attn_bias=causal)[:, :-1]               # position s predicts token s + 1
        logits = torch.einsum("bsd,skd->bsk", h, self.head[torch.arange(S - 1) % T])
        return F.cross_entropy(rearrange(logits, "b s k -> b k s"), rearrange(target, "b w t -> b (w t)"), ignore_index=-1)


def synthetic_table(n_users: int, seed: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """-> users [N] (grouped), items [N], catalogue [N_ITEMS, T] semantic IDs (distinct)."""
    rng = np.random.default_rng(seed)
    counts = user_activity(n_users, n_users * MEAN_RATINGS, 29_195, rng)  # the stand-in's cap at 32M
    users = np.repeat(np.arange(n_users), counts)
    items = torch.from_numpy(rng.integers(0, N_ITEMS, size=len(users)))
    g = torch.Generator().manual_seed(seed)
    catalogue = torch.unique(torch.randint(0, CODEBOOK_SIZE, (2 * N_ITEMS, N_LEVELS), generator=g), dim=0)[:N_ITEMS]
    return users, items, catalogue[torch.randperm(len(catalogue), generator=g)]


def quantile_batches(batches: torch.Tensor, lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """An epoch's batches [n, B] -> `steps` of them at evenly spaced quantiles of their longest item count: each
    stands for as many batches of the epoch as the others, so their sums estimate the epoch's targets per second
    far better than the first few batches would (a batch's cost varies with its length tenfold)."""
    order = torch.sort(lengths[batches].max(dim=1).values, stable=True).indices
    return batches[order[((torch.arange(steps) + 0.5) * len(order) / steps).long()]]


def time_mode(step, batches: list) -> dict:
    """CPU seconds of training `batches` after one warm-up step on the middle one -> targets per CPU second."""
    step(batches[len(batches) // 2])
    cpu, wall, targets = time.process_time(), time.perf_counter(), 0
    for batch in batches:
        step(batch)
        targets += int(n_targets(batch))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"steps": len(batches), "targets": targets, "cpu_s": cpu, "wall_s": wall, "targets_per_cpu_s": targets / cpu}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.all_positions", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8, help="timed batches per mode, at quantiles of an epoch's lengths")
    parser.add_argument("--example-batch", type=int, default=16, help="examples per per-example batch")
    parser.add_argument("--window-batch", type=int, default=2, help="windows per all-positions batch")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    users, items, catalogue = synthetic_table(args.users, seed=0)
    trie = SemanticIdTrie(catalogue, CODEBOOK_SIZE)
    rows, lengths = (torch.from_numpy(a) for a in leave_one_out(users, MAX_SEQ_LEN)["train"])
    starts, window_lengths, first_targets = cut_windows(rows, torch.from_numpy(users)[rows], MAX_SEQ_LEN, 2 * MAX_SEQ_LEN)
    window_users = torch.from_numpy(users)[starts]
    g = torch.Generator().manual_seed(1)

    def example_batch(index: torch.Tensor, trim: bool) -> dict:
        raw = {"user_id": torch.from_numpy(users)[rows[index]], "target": items[rows[index]],
               "history": gather_histories(items, rows[index], lengths[index], MAX_SEQ_LEN)}
        batch = sem_id_batch(raw, catalogue)
        return trim_history(batch, lengths[index].max()) if trim else batch

    def window_batch(index: torch.Tensor) -> dict:
        window, is_target = gather_windows(items, starts[index], window_lengths[index], first_targets[index], 2 * MAX_SEQ_LEN)
        return trim_history(window_sem_id_batch(window_users[index], window, is_target, catalogue),
                            window_lengths[index].max())

    n, b = args.steps, args.example_batch
    plain = torch.randperm(len(rows), generator=g)[:len(rows) // b * b].view(-1, b)
    padded = [example_batch(i, False) for i in quantile_batches(plain, lengths, n)]
    bucketed = [example_batch(i, True) for i in quantile_batches(length_bucketed_batches(lengths, b, g)[0], lengths, n)]
    windows = [window_batch(i) for i in quantile_batches(length_bucketed_batches(window_lengths, args.window_batch, g)[0],
                                                         window_lengths, n)]

    def trainer(all_positions: bool):
        torch.manual_seed(0)
        model = train_decoder.build_model(catalogue, CODEBOOK_SIZE, MAX_SEQ_LEN, {**MODEL, "all_positions": all_positions})
        opt = build_optimizer(model, "adamw", 0.002, 0.01)
        return lambda batch: train_decoder.train_step(model, model, batch, opt, contextlib.nullcontext(), trie=trie)

    stand_in = DecoderOnlyStandIn(MODEL["n_encoder_layers"] + MODEL["n_decoder_layers"], *(MODEL[k] for k in (
        "d_model", "n_heads", "d_head", "ff_dim", "dropout", "n_user_buckets")))
    opt_b = build_optimizer(stand_in, "adamw", 0.002, 0.01)

    def decoder_only_step(batch: dict) -> None:
        opt_b.zero_grad(set_to_none=True)
        stand_in.loss(batch["user_ids"], batch["history"], batch["target"]).backward()
        opt_b.step()

    modes = {"per example, padded": (trainer(False), padded), "per example, bucketed": (trainer(False), bucketed),
             "all positions (A, causal encoder-decoder)": (trainer(True), windows),
             "decoder-only pass (B, stand-in)": (decoder_only_step, windows)}
    result = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__, "threads": 1,
              "users": args.users, "training_targets": len(rows), "windows": len(starts),
              "mean_window_items": float(window_lengths.float().mean()), "mean_history_items": float(lengths.float().mean()),
              "example_batch": args.example_batch, "window_batch": args.window_batch, "modes": {}}
    for name, (step, batches) in modes.items():
        result["modes"][name] = time_mode(step, batches)
        print(json.dumps({name: result["modes"][name]}), flush=True)
    base = result["modes"]["per example, padded"]["targets_per_cpu_s"]
    print(f"\n{args.users} synthetic users, {len(rows):,} training targets in {len(starts):,} windows "
          f"(mean window {result['mean_window_items']:.0f} items, mean per-example history {result['mean_history_items']:.0f}):\n")
    print("| mode | batch | timed steps | targets | CPU s | targets / CPU s | vs per example, padded |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in result["modes"].items():
        batch = f"{args.window_batch} windows" if "pass" in name or "all" in name else f"{args.example_batch} examples"
        print(f"| {name} | {batch} | {r['steps']} | {r['targets']:,} | {r['cpu_s']:.1f} | {r['targets_per_cpu_s']:,.0f} | "
              f"{r['targets_per_cpu_s'] / base:.1f}x |")
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
