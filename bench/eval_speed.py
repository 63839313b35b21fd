"""Time to evaluate a whole split with trie-constrained beam search.

    python -m bench.eval_speed configs/decoder_amazon_cpu.gin [--split test] [--beam-width 10]
        [--batch-size 1024] [--gin 'train.dataset_folder="../shared/data/amazon"' ...]

Runs evaluate.py's full evaluation (a beam search over every user of the split per ranking protocol,
plain and history skipped, metrics, the floors) on the trained checkpoint of the config and prints a
table: users, beam width, wall seconds of both beam searches, users per second and per search, peak
resident memory.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time

import torch

import evaluate


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--split", default="test", choices=("valid", "test"))
    parser.add_argument("--beam-width", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--gin", action="append", default=[])
    args = parser.parse_args(argv)

    start = time.time()
    argv_eval = [args.config, "--split", args.split, "--beam-width", str(args.beam_width)]
    argv_eval += ["--batch-size", str(args.batch_size)] if args.batch_size else []
    for binding in args.gin:
        argv_eval += ["--gin", binding]
    result = evaluate.main(argv_eval)
    total = time.time() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    row = {"device": device, "split": args.split, "users": result["users"], "beam_width": result["beam_width"],
           "beam_search_seconds": result["eval_seconds"], "users_per_second": round(2 * result["users"] / result["eval_seconds"], 1),  # two searches
           "total_seconds": round(total, 1), "peak_memory_mib": round(peak_mib), "recall@10": result["tiger"]["recall@10"]}
    print("| device | split | users | beam | beam search s | users/s | total s (incl. loading) | peak MiB |", file=sys.stderr)
    print("|---|---|---|---|---|---|---|---|", file=sys.stderr)
    print(f"| {device} | {args.split} | {row['users']:,} | {row['beam_width']} | {row['beam_search_seconds']} | "
          f"{row['users_per_second']} | {row['total_seconds']} | {row['peak_memory_mib']} |", file=sys.stderr)
    print(json.dumps(row))
    return row


if __name__ == "__main__":
    main()
