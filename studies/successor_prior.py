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
from evaluation.report import evaluate_split, floor_rows
from evaluation.retrieval import PRIOR_SUCCESSORS, transition_prior_table
from modules.model import EncoderDecoderRetrievalModel
from modules.tokenizer import SemanticIdTokenizer
from runtime.checkpointing import file_sha256, load_checkpoint
from studies.cli import add_data_arguments


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.add_argument("--run", action="append", required=True, metavar="LABEL:BEST_PT:SEMANTIC_IDS_PT",
                        help="a trained run: a label, its best.pt and its stage-1 semantic_ids.pt")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    parser.add_argument("--successors", type=int, default=PRIOR_SUCCESSORS, help="most frequent successors kept per item")
    parser.add_argument("--max-seq-len", type=int, default=20, help="train.max_seq_len of the runs")
    parser.add_argument("--valid-max-users", type=int, default=4000, help="train.valid_max_users of the runs (0: all)")
    parser.add_argument("--beam-width", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    runs = [r.split(":") for r in args.run]
    if any(len(r) != 3 for r in runs):
        parser.error("--run takes LABEL:BEST_PT:SEMANTIC_IDS_PT")
    if any(w < 0 for w in args.weights):
        parser.error("--weights must be >= 0")

    data_args = (args.root, args.dataset, args.split)
    train, valid = (SeqData(*data_args, name, args.max_seq_len, args.cache_dir) for name in ("train", "valid"))
    n = args.valid_max_users
    index = (torch.arange(len(valid)) if not n or n >= len(valid)
             else torch.linspace(0, len(valid) - 1, n).long())  # as train_decoder.py's validation users
    successors = transition_prior_table(train, args.successors)
    floors = floor_rows(train, valid, index)
    rows = [{"run": "transition floor", "split": args.split, "users": len(index),
             **{p: floors[p]["transition"] for p in PROTOCOLS}}]
    cell = lambda row, p: f"{row[p]['ndcg@10']:.4f} / {row[p]['recall@10']:.4f}"
    print("| run | prior weight | plain NDCG@10 / Recall@10 | history skipped NDCG@10 / Recall@10 | seconds |\n"
          "|---|---:|---:|---:|---:|")
    print(f"| transition floor | - | {cell(rows[0], 'plain')} | {cell(rows[0], 'history_skipped')} | - |", flush=True)
    for label, checkpoint, tokenizer_file in runs:
        tokenizer = SemanticIdTokenizer.load(tokenizer_file)
        if len(tokenizer.sem_ids) != train.n_items:
            raise SystemExit(f"{tokenizer_file}: {len(tokenizer.sem_ids)} items, {args.dataset}/{args.split} has "
                             f"{train.n_items}")
        state = load_checkpoint(checkpoint, map_location="cpu")
        if state.get("tokenizer_sha256") != file_sha256(tokenizer_file):  # another stage 1: its IDs mean other items
            raise SystemExit(f"{checkpoint} was not trained with {tokenizer_file} (the tokenizer's SHA-256 differs)")
        model = EncoderDecoderRetrievalModel(**state["model_kwargs"])
        model.load_state_dict(state["model"])
        model.eval()
        for weight in args.weights:
            start = time.time()
            record = evaluate_split(model, valid, tokenizer.sem_ids, tokenizer.trie(), beam_width=args.beam_width,
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
