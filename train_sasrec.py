"""SASRec, the ID-based baseline of TIGER's Table 1 (Kang & McAuley 2018; modules/sasrec.py), trained and
evaluated exactly as TIGER is.

    python train_sasrec.py configs/sasrec_amazon.gin [--gin 'train.split="sports"' ...]

Data: TIGER's leave-one-out training examples (every item of a user's sequence except the first and
the last two, each seeing at most max_seq_len items before it), trained in causal passes over windows
that give every example exactly its TIGER history, once per epoch (data/sasrec_rows.py). Loss:
"bce" (the paper's: the true next item against one sampled item the user never met, per position) or
"ce" (full-softmax cross-entropy over all items). Every `eval_every` steps the VALIDATION split is
ranked over the whole catalogue; best.pt is the step with the best validation `select_metric` under
`select_protocol`, and training stops after `patience` validations without a new best. Then, once,
the TEST split is ranked with best.pt. Both ranking protocols are reported every time, next to the
popularity and transition floors: "plain" (every item may be ranked, the paper's) and
"history_skipped" (the user's history items, the model's input, are removed from the ranking).

Writes <save_dir>/<dataset>-<split>/: best.pt, config.gin, curve.jsonl (one line per validation),
result.json (what the last stdout line prints, as one JSON object). A rerun starts over.
"""
from __future__ import annotations

import json
import math
import sys
import time

import gin
import torch

from data.processed import SeqData
from data.sasrec_rows import ROW_MODES, sample_negatives, training_rows, user_item_keys
from evaluation.full_ranking import rank_all_items
from evaluation.protocols import PROTOCOLS
from evaluation.report import floor_rows
from evaluation.retrieval import METRIC_KS, retrieval_metrics
from modules.sasrec import LOSSES, SASRec
from runtime.atomic_io import atomic_write_text
from runtime.checkpointing import gin_bindings, load_checkpoint, save_checkpoint
from runtime.errors import ConfigError
from runtime.gin_cli import check_choice, check_non_negative, check_positive, run_entry_point
from runtime.run_folder import claim_run_folder, run_dir

REPORTED = ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10")
DEVICES = ("auto", "cpu", "cuda")


def model_metrics(model: SASRec, data: SeqData, batch_size: int, device: torch.device) -> dict[str, dict[str, float]]:
    """{protocol: metrics} of the model's full ranking of every example of `data`."""
    ranked = rank_all_items(model, data, max(METRIC_KS), batch_size, device)
    return {protocol: retrieval_metrics(ranked[protocol], data.targets) for protocol in PROTOCOLS}


def metrics_line(metrics: dict[str, float]) -> str:
    return " ".join(f"{m} {metrics[m]:.4f}" for m in REPORTED)


@gin.configurable
def train(
    dataset_folder: str = "raw_data/amazon",
    dataset: str = "amazon",
    split: str = "beauty",
    cache_dir: str = "cache",
    save_dir: str = "out/sasrec",
    max_seq_len: int | None = None,      # None: 20 for Amazon, 200 for MovieLens (data/processed.py), as TIGER
    loss: str = "bce",                   # "bce" (the paper's, one sampled negative per position) | "ce" (full softmax)
    train_rows: str = "windows",         # "windows" (causal passes, data/sasrec_rows.py) | "examples" (one per row)
    iterations: int = 60_000,            # at most this many steps (patience may stop earlier)
    batch_size: int = 128,               # rows per step (a window row trains up to max_seq_len targets)
    learning_rate: float = 0.001,
    adam_beta2: float = 0.98,            # the code's AdamOptimizer(beta2=0.98)
    d_model: int = 50,
    n_blocks: int = 2,
    n_heads: int = 1,
    dropout: float = 0.5,
    eval_every: int = 1000,
    eval_batch_size: int = 1024,
    patience: int = 0,                   # stop after this many validations without a new best (0: never)
    select_metric: str = "ndcg@10",
    select_protocol: str = "plain",      # the protocol best.pt is chosen under ("plain" | "history_skipped")
    seed: int = 42,
    device: str = "auto",
    num_threads: int | None = None,
) -> dict:
    check_positive(max_seq_len=max_seq_len, iterations=iterations, batch_size=batch_size, learning_rate=learning_rate,
                   d_model=d_model, n_blocks=n_blocks, n_heads=n_heads, eval_every=eval_every,
                   eval_batch_size=eval_batch_size, num_threads=num_threads)
    check_non_negative(patience=patience)
    check_choice(loss=(loss, LOSSES), train_rows=(train_rows, ROW_MODES), select_protocol=(select_protocol, PROTOCOLS),
                 device=(device, DEVICES))
    if not 0 <= dropout < 1:
        raise ConfigError(f"train.dropout = {dropout!r}: must be in [0, 1)", binding="dropout")
    if not 0 <= adam_beta2 < 1:
        raise ConfigError(f"train.adam_beta2 = {adam_beta2!r}: must be in [0, 1)", binding="adam_beta2")
    if d_model % n_heads:
        raise ConfigError(f"train.d_model = {d_model} is not divisible by train.n_heads = {n_heads}", binding="n_heads")
    if select_metric not in {f"{m}@{k}" for m in ("recall", "ndcg") for k in METRIC_KS}:
        raise ConfigError(f"train.select_metric = {select_metric!r}: expected recall@K or ndcg@K with K in {METRIC_KS}",
                          binding="select_metric")
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    torch.manual_seed(seed)  # initialisation and dropout
    start_time = time.time()
    out_dir = run_dir(save_dir, dataset, split)

    train_data = SeqData(dataset_folder, dataset, split, "train", max_seq_len, cache_dir)
    valid_data = SeqData(dataset_folder, dataset, split, "valid", max_seq_len, cache_dir)
    rows = training_rows(train_data, train_rows)
    keys = user_item_keys(train_data)  # what the BCE negatives avoid
    if batch_size > len(rows):
        raise ConfigError(f"train.batch_size = {batch_size} exceeds the {len(rows)} training rows", binding="batch_size")
    inputs, labels, row_users = rows.inputs.to(dev), rows.labels.to(dev), rows.users
    model = SASRec(train_data.n_items, train_data.max_seq_len, d_model=d_model, n_blocks=n_blocks, n_heads=n_heads,
                   dropout=dropout).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate, betas=(0.9, adam_beta2))
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters; {len(train_data):,} training examples in "
          f"{len(rows):,} rows ({train_rows}); {len(valid_data):,} validation users; loss {loss}; device {dev}",
          file=sys.stderr)

    valid_floors = floor_rows(train_data, valid_data)  # the floors TIGER's validation and evaluate.py report
    for protocol in PROTOCOLS:
        for name in ("popularity", "transition"):
            print(f"valid {protocol} {name}: {metrics_line(valid_floors[protocol][name])}", file=sys.stderr)
    claim_run_folder(out_dir)  # one run at a time writes it; an unwritable folder fails here
    atomic_write_text(gin.operative_config_str(), out_dir / "config.gin")
    bindings = gin_bindings(train)
    best_path = out_dir / "best.pt"

    # Every row once per epoch, in the order randperm(seed + epoch); the last batch of an epoch may be short.
    steps_per_epoch = math.ceil(len(rows) / batch_size)
    negatives_rng = torch.Generator().manual_seed(seed)
    step, best, history, since_best, order = 0, {"step": None, "valid": None}, [], 0, None
    train_seconds = eval_seconds = 0.0
    loss_sum, loss_steps = 0.0, 0
    stopped_early = False
    while step < iterations:
        tick = time.time()
        epoch, offset = divmod(step, steps_per_epoch)
        if offset == 0:
            order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed + epoch))
        batch = order[offset * batch_size:(offset + 1) * batch_size].to(dev)
        width = int((inputs[batch] >= 0).sum(dim=1).max())  # right-padded: the batch's longest row
        x, y = inputs[batch, :width], labels[batch, :width]  # [b, width]
        trained = y >= 0  # [b, width]
        model.train()
        hidden = model(x)[trained]  # [n, D], n = trained positions of the batch
        negatives = None
        if loss == "bce":
            users = row_users[batch.cpu()][:, None].expand(-1, width)[trained.cpu()]  # [n]
            negatives = sample_negatives(users, train_data.n_items, keys, negatives_rng).to(dev)
        batch_loss = model.loss(hidden, y[trained], negatives, loss)
        opt.zero_grad(set_to_none=True)
        batch_loss.backward()
        opt.step()
        step += 1
        loss_sum += batch_loss.item()
        loss_steps += 1
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"the training loss is {loss_sum} at step {step}")
        train_seconds += time.time() - tick

        if step % eval_every == 0 or step == iterations:
            tick = time.time()
            valid = model_metrics(model, valid_data, eval_batch_size, dev)
            record = {"step": step, "epoch": round(step / steps_per_epoch, 2),
                      "wall_seconds": round(time.time() - start_time, 1), "train_loss": loss_sum / loss_steps,
                      **{f"{p}/{m}": v for p in PROTOCOLS for m, v in valid[p].items()}}
            loss_sum, loss_steps = 0.0, 0
            history.append(record)
            atomic_write_text("".join(json.dumps(r) + "\n" for r in history), out_dir / "curve.jsonl")
            score = valid[select_protocol][select_metric]
            is_best = best["valid"] is None or score > best["valid"][select_protocol][select_metric]
            if is_best:
                best, since_best = {"step": step, "valid": valid}, 0
                save_checkpoint(best_path, {"model": model.state_dict(), "model_kwargs": model.kwargs},
                                step=step, bindings=bindings, metrics=valid[select_protocol])
            else:
                since_best += 1
            print(f"step {step} (epoch {record['epoch']}): loss {record['train_loss']:.4f} valid "
                  + " | ".join(f"{p} {metrics_line(valid[p])}" for p in PROTOCOLS) + (" *" if is_best else ""),
                  file=sys.stderr)
            eval_seconds += time.time() - tick
            if patience and since_best >= patience:
                stopped_early = True
                break

    # The test split, read once, with the weights validation chose.
    tick = time.time()
    state = load_checkpoint(best_path, map_location=dev)
    model.load_state_dict(state["model"])
    test_data = SeqData(dataset_folder, dataset, split, "test", max_seq_len, cache_dir)
    floors = floor_rows(train_data, test_data)
    test = {p: {"sasrec": m, **floors[p]} for p, m in model_metrics(model, test_data, eval_batch_size, dev).items()}
    test_seconds = time.time() - tick
    for protocol in PROTOCOLS:
        for name, metrics in test[protocol].items():
            print(f"test {protocol} {name}: {metrics_line(metrics)}", file=sys.stderr)
    result = {"dataset": dataset, "split": split, "loss": loss, "seed": seed, "best_step": best["step"],
              "best_valid": best["valid"], "test": test, "valid_floors": valid_floors, "select_metric": select_metric,
              "select_protocol": select_protocol, "steps": step, "epochs": round(step / steps_per_epoch, 2),
              "stopped_early": stopped_early, "train_rows": train_rows, "n_rows": len(rows),
              "n_train_examples": len(train_data), "n_test_users": len(test_data),
              "train_seconds": round(train_seconds, 1), "eval_seconds": round(eval_seconds, 1),
              "test_seconds": round(test_seconds, 1), "wall_seconds": round(time.time() - start_time, 1),
              "best_checkpoint": str(best_path), "valid_history": history}
    atomic_write_text(json.dumps(result, indent=1) + "\n", out_dir / "result.json")
    return result


def main(argv: list[str] | None = None) -> dict:
    return run_entry_point(train, argv, description=__doc__)


if __name__ == "__main__":
    main()
