"""Evaluate a trained TIGER model next to the popularity and transition baselines.

    python evaluate.py configs/decoder_amazon.gin --split test [--gin ...] [--write-topk FILE] [--user USER_ID]

Reads the same gin file as train_decoder.py (paths come from its `train` bindings), loads
<save_dir>/<dataset>-<split>/best.pt (chosen on validation) and the tokenizer, runs
trie-constrained beam search for every user of the split and prints Recall@1/5/10 and
NDCG@5/10, the share of invalid IDs, catalogue coverage, and the same for two floors counted on
the training split: popularity, and the transition baseline ("the items that most often followed
the user's last item", modules/transition.py). Last stdout line: one JSON object.
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
import time

import gin
import torch

from data.processed import SeqData, as_dataset, load_processed
from modules.atomic_io import atomic_write_text
from modules.checkpointing import load_checkpoint
from modules.gin_cli import parse_gin_args
from modules.model import EncoderDecoderRetrievalModel
from modules import precision
from modules.popularity import most_popular
from modules.transition import transition_topk
from train_decoder import METRIC_KS, load_tokenizer, recommend, retrieval_metrics, run_dir, train

REPORTED = ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10")


def train_config() -> dict:
    """The effective arguments of train(): its defaults overridden by the gin bindings."""
    defaults = {name: p.default for name, p in inspect.signature(inspect.unwrap(train)).parameters.items()}
    return {**defaults, **gin.get_bindings(train)}


def main(argv: list[str] | None = None) -> dict:
    gin.clear_config()
    args = parse_gin_args(train, argv, description=__doc__)
    parser = argparse.ArgumentParser(prog="evaluate.py")
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--write-topk", metavar="FILE", help="write each user's top-K (with titles) as JSON lines")
    parser.add_argument("--user", type=int, metavar="USER_ID", help="print the recommendations for this user (0-based id)")
    parser.add_argument("--beam-width", type=int, help="default: train.eval_beam_width")
    parser.add_argument("--batch-size", type=int, help="default: train.eval_batch_size")
    opts = parser.parse_args(args.extra)
    cfg = train_config()
    if cfg["num_threads"] is not None:
        torch.set_num_threads(cfg["num_threads"])
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg["device"] == "auto" else cfg["device"])
    beam_width = opts.beam_width or cfg["eval_beam_width"]
    top_k = max(METRIC_KS)
    if beam_width < top_k:
        raise ValueError(f"--beam-width {beam_width}: must be >= {top_k}")

    tokenizer = load_tokenizer(cfg["tokenizer_dir"], cfg["dataset"], cfg["split"])
    best_path = run_dir(cfg["save_dir"], cfg["dataset"], cfg["split"]) / "best.pt"
    if not best_path.is_file():
        raise FileNotFoundError(f"no checkpoint at {best_path}: run train_decoder.py with this config first")
    state = load_checkpoint(best_path, map_location=dev)
    model = EncoderDecoderRetrievalModel(**state["model_kwargs"]).to(dev)
    model.load_state_dict(state["model"])
    model.eval()
    data_args = (cfg["dataset_folder"], cfg["dataset"], cfg["split"])
    data = SeqData(*data_args, opts.split, cfg["max_seq_len"], cfg["cache_dir"])
    train_data = SeqData(*data_args, "train", cfg["max_seq_len"], cfg["cache_dir"])
    trie = tokenizer.trie().to(dev)

    start = time.time()
    with precision.autocast(dev, cfg["precision"]):  # the precision validation chose best.pt with
        found = recommend(model, data, tokenizer.sem_ids, trie, beam_width, top_k,
                          opts.batch_size or cfg["eval_batch_size"], dev, progress=True,
                          sort_by_length=cfg["eval_sort_by_length"])
    seconds = time.time() - start
    ranked = found["item_ids"]  # [M, top_k]
    # Validity, checked independently of the beam search's own bookkeeping: every returned
    # ID (a slot with a finite score) must be some item's full ID, and that item's.
    returned = torch.isfinite(found["scores"])
    looked_up = trie.lookup(found["sem_ids"][returned].to(dev)).cpu()
    invalid_share = float((looked_up != ranked[returned]).float().mean()) if returned.any() else 0.0
    model_metrics = retrieval_metrics(ranked, data.targets)
    # The floors, counted on the training split only: popularity and the transition baseline.
    popular = most_popular(train_data.targets, tokenizer.n_items, top_k)
    pop_metrics = retrieval_metrics(popular.expand(len(data), -1), data.targets)
    transition = transition_topk(train_data.last_items, train_data.targets, data.last_items, tokenizer.n_items, top_k)
    transition_metrics = retrieval_metrics(transition, data.targets)
    coverage = lambda items: len(torch.unique(items[items >= 0])) / tokenizer.n_items

    result = {
        "split": opts.split, "users": len(data), "checkpoint": str(best_path), "checkpoint_step": state["manifest"]["step"],
        "beam_width": beam_width,
        "tiger": {**{k: model_metrics[k] for k in REPORTED}, "invalid_id_share": invalid_share,
                  f"coverage@{top_k}": coverage(ranked)},
        "popularity": {**{k: pop_metrics[k] for k in REPORTED}, f"coverage@{top_k}": coverage(popular)},
        "transition": {**{k: transition_metrics[k] for k in REPORTED}, f"coverage@{top_k}": coverage(transition)},
        "eval_seconds": round(seconds, 1),
    }
    print(f"{opts.split} split, {len(data):,} users, beam {beam_width}, {seconds:.1f}s", file=sys.stderr)
    print(f"{'metric':<16}{'TIGER':>10}{'popularity':>12}{'transition':>12}", file=sys.stderr)
    for k in result["tiger"]:
        floors = "".join(f"{result[b][k]:>12.4f}" if k in result[b] else " " * 12 for b in ("popularity", "transition"))
        print(f"{k:<16}{result['tiger'][k]:>10.4f}{floors}", file=sys.stderr)

    if opts.write_topk or opts.user is not None:
        titles = load_processed(cfg["dataset_folder"], as_dataset(cfg["dataset"]), cfg["split"], cfg["cache_dir"]).titles
        entry = lambda i, s=None: {"item_id": int(i), "title": titles[i], **({} if s is None else {"score": round(float(s), 4)})}

        def user_record(row: int) -> dict:
            history = data.history_batch(torch.tensor([row]))[0]
            return {"user_id": int(data.user_ids[row]), "history": [entry(i) for i in history[history >= 0].tolist()],
                    "target": entry(int(data.targets[row])),
                    "recommendations": [entry(i, s) for i, s in zip(ranked[row].tolist(), found["scores"][row].tolist()) if i >= 0]}

        if opts.write_topk:
            atomic_write_text("".join(json.dumps(user_record(r)) + "\n" for r in range(len(data))), opts.write_topk)
            result["topk_file"] = opts.write_topk
        if opts.user is not None:
            rows = torch.nonzero(data.user_ids == opts.user).flatten()
            if len(rows) == 0:
                raise ValueError(f"--user {opts.user}: no such user in the {opts.split} split (ids are 0-based, < {data.n_users})")
            record = user_record(int(rows[0]))
            print(f"\nuser {opts.user}, history (oldest first):", file=sys.stderr)
            for it in record["history"]:
                print(f"  {it['item_id']:>6}  {it['title']}", file=sys.stderr)
            print(f"held-out {opts.split} item: {record['target']['item_id']}  {record['target']['title']}", file=sys.stderr)
            print("recommendations:", file=sys.stderr)
            for rank, it in enumerate(record["recommendations"], 1):
                hit = "  <- held-out item" if it["item_id"] == record["target"]["item_id"] else ""
                print(f"  {rank:>2}. {it['item_id']:>6}  {it['score']:>8.3f}  {it['title']}{hit}", file=sys.stderr)
            result["user"] = record
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
