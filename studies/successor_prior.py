"""Does a trained stage-2 model gain from the transition baseline's counts at search time? A diagnostic on the
validation split: the beam search adds W * log(1 + count) of the items that followed each user's last item in
training (evaluation/transition.successor_counts; constrained_beam_search's `prior`) to every level's logits,
for each weight W, under both ranking protocols, beside the floors.

    python -m studies.successor_prior --root ../shared/data/amazon --cache-dir cache --split sports \
        --run recipe:out/decoder_cpu/amazon-sports/best.pt:out/rqvae_cpu/amazon-sports/semantic_ids.pt [--run ...] \
        --weights 0 0.5 1 2 [--valid-max-users 4000] [--beam-width 30] [--json prior.json]

W = 0 is the model's own search (its validation number, on the same fixed, spread-out users as training's
validation). A gain here says how much of the gap to the transition floor is transitions the model has seen
but does not rank; it is a probe of a trained model, not a recipe: a weight chosen here is tuned on validation.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from data.processed import SeqData
from evaluation.protocols import PROTOCOLS
from evaluation.report import evaluate_split, floor_rows, validation_users
from evaluation.retrieval import PRIOR_SUCCESSORS, transition_prior_table
from studies.cli import add_data_arguments, add_run_arguments, load_run, run_specs


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    add_run_arguments(parser)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    parser.add_argument("--successors", type=int, default=PRIOR_SUCCESSORS, help="most frequent successors kept per item")
    parser.add_argument("--valid-max-users", type=int, default=4000, help="train.valid_max_users of the runs (0: all)")
    args = parser.parse_args(argv)
    runs = run_specs(parser, args)
    if any(w < 0 for w in args.weights):
        parser.error("--weights must be >= 0")

    data_args = (args.root, args.dataset, args.split)
    train, valid = (SeqData(*data_args, name, args.max_seq_len, args.cache_dir) for name in ("train", "valid"))
    index = validation_users(len(valid), args.valid_max_users or None)  # train_decoder.py's validation users
    successors = transition_prior_table(train, args.successors)
    floors = floor_rows(train, valid, index)
    rows = [{"run": "transition floor", "split": args.split, "users": len(index),
             **{p: floors[p]["transition"] for p in PROTOCOLS}}]
    cell = lambda row, p: f"{row[p]['ndcg@10']:.4f} / {row[p]['recall@10']:.4f}"
    print("| run | prior weight | plain NDCG@10 / Recall@10 | history skipped NDCG@10 / Recall@10 | seconds |\n"
          "|---|---:|---:|---:|---:|")
    print(f"| transition floor | - | {cell(rows[0], 'plain')} | {cell(rows[0], 'history_skipped')} | - |", flush=True)
    for label, checkpoint, tokenizer_file in runs:
        model, tokenizer, state = load_run(checkpoint, tokenizer_file, train.n_items, f"{args.dataset}/{args.split}")
        trie = tokenizer.trie()  # one per run, searched at every weight
        for weight in args.weights:
            start = time.time()
            record = evaluate_split(model, valid, tokenizer.sem_ids, trie, beam_width=args.beam_width,
                                    batch_size=args.batch_size, device=torch.device("cpu"), index=index,
                                    sort_by_length=True, successors=successors, prior_weight=weight)
            row = {"run": label, "checkpoint": checkpoint, "checkpoint_step": state["manifest"]["step"],
                   "split": args.split, "users": len(index), "beam_width": args.beam_width, "prior_weight": weight,
                   "successors": args.successors, **{p: record[p]["tiger"] for p in PROTOCOLS},
                   "seconds": round(time.time() - start, 1)}
            rows.append(row)
            print(f"| {label} | {weight:g} | {cell(row, 'plain')} | {cell(row, 'history_skipped')} | "
                  f"{row['seconds']:.0f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
