"""Process a data set (or read it from the cache) and print its statistics.

    python -m data --dataset amazon --split beauty --root ../shared/data/amazon --cache-dir cache

The last line of stdout is one JSON object: users, items, interactions, train,
valid, test, feature_dim, and whether raw files were parsed / texts embedded this run.
"""
from __future__ import annotations

import argparse
import json
import sys

import data.item_embeddings as item_embeddings
import data.processed as processed
from data.processed import ItemData, RecDataset, SeqData
from runtime.errors import exit_on_user_error


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m data", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="amazon", choices=[d.value for d in RecDataset])
    parser.add_argument("--split", default="beauty", help="Amazon: beauty, sports or toys; custom: your data set's name (ignored for MovieLens)")
    parser.add_argument("--root", required=True, help="folder holding raw/<split>/ (downloaded there if missing and the network allows)")
    parser.add_argument("--cache-dir", default="cache")
    parser.add_argument("--max-seq-len", type=int, default=None)
    parser.add_argument("--encoder-model", default=None, help="sentence-transformers hub name or local path")
    parser.add_argument("--force-process", action="store_true")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (or set TIGER_DEBUG=1)")
    args = parser.parse_args(argv)
    with exit_on_user_error(argv is None, sys.argv[1:] if argv is None else argv):  # one line, exit status 2
        return statistics(args)


def statistics(args: argparse.Namespace) -> dict:
    raw_loads, encode_calls = processed.RAW_LOADS, item_embeddings.ENCODE_CALLS
    items = ItemData(args.root, args.dataset, args.split, subset="all", cache_dir=args.cache_dir,
                     encoder_model=args.encoder_model, force_process=args.force_process)
    seqs = {s: SeqData(args.root, args.dataset, args.split, subset=s, max_seq_len=args.max_seq_len,
                       cache_dir=args.cache_dir) for s in ("train", "valid", "test")}
    n_interactions = len(seqs["test"].items)
    cache = processed.cache_folder(args.cache_dir, RecDataset(args.dataset), args.split)
    stats = {
        "dataset": args.dataset, "split": cache.name,  # MovieLens ignores --split: its one split is its name
        "users": seqs["test"].n_users, "items": items.n_items, "interactions": n_interactions,
        "train": len(seqs["train"]), "valid": len(seqs["valid"]), "test": len(seqs["test"]),
        "feature_dim": items.feature_dim, "max_seq_len": seqs["test"].max_seq_len,
        "avg_sequence_length": round(n_interactions / seqs["test"].n_users, 2),
        "density": round(n_interactions / (seqs["test"].n_users * items.n_items), 6),
        "parsed_raw": processed.RAW_LOADS > raw_loads,
        "embedded": item_embeddings.ENCODE_CALLS > encode_calls,
        "cache_dir": str(cache),
    }
    width = max(len(k) for k in stats)
    for key, value in stats.items():
        print(f"{key:<{width}}  {value}", file=sys.stderr)
    print(json.dumps(stats))
    return stats


if __name__ == "__main__":
    main()
