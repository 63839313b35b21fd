"""How well a trained stage-2 model ranks its own TRAINING examples, next to the validation users, by what the
training split knows about the (last history item -> target) pair (studies/transition_gap.py's buckets).

    python -m studies.train_fit --root ../shared/data/amazon --cache-dir cache --split beauty \
        --run recipe:out/decoder_cpu/amazon-beauty/best.pt:out/rqvae_cpu/amazon-beauty/semantic_ids.pt [--run ...] \
        [--sample 2000] [--beam-width 30] [--json fit.json]

A training example is bucketed by how often its pair occurs among the training examples besides itself, a
validation user by how often its pair occurs among them at all, so a row compares like with like: what the
model does with a transition it was trained on (and on which it could have memorised the very example) and
with one it was trained on only through other users. Each bucket is a fixed random sample of at most
--sample examples (seed 0; the same for every run); the model ranks them by beam search under the plain
protocol (the paper's: every item may be generated). A model far under the transition floor on its own
frequent training pairs underfits them; one far above its validation users memorises examples.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from data.processed import SeqData
from evaluation.retrieval import baseline_topk, recommend, retrieval_metrics
from studies.cli import add_data_arguments, add_run_arguments, load_run, run_specs
from studies.transition_gap import TOP_K, pair_buckets


def sample(mask: torch.Tensor, n: int | None, generator: torch.Generator) -> torch.Tensor:
    """bool [N] -> at most n of its True indices, a fixed random choice (all of them, in order, if n is None)."""
    index = torch.nonzero(mask).flatten()
    if n is None or len(index) <= n:
        return index
    return index[torch.randperm(len(index), generator=generator)[:n]].sort().values


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    add_run_arguments(parser)
    parser.add_argument("--sample", type=int, default=2000, help="examples per bucket and split at most (0: all)")
    args = parser.parse_args(argv)
    runs = run_specs(parser, args)

    data_args = (args.root, args.dataset, args.split)
    splits = {name: SeqData(*data_args, name, args.max_seq_len, args.cache_dir) for name in ("train", "valid")}
    train = splits["train"]
    buckets = {"train": pair_buckets(train.last_items, train.targets, train.last_items, train.targets, train.n_items,
                                     besides_itself=True),
               "valid": pair_buckets(train.last_items, train.targets, splits["valid"].last_items,
                                     splits["valid"].targets, train.n_items)}
    generator = torch.Generator().manual_seed(0)
    chosen = {(split, name): sample(mask, args.sample or None, generator)  # the same examples for every run
              for split in ("train", "valid") for name, mask in buckets[split].items()}
    floor = baseline_topk(train, splits["valid"], TOP_K)["transition"]  # plain, as the model's lists
    rows = []
    print("| run | bucket | train examples (sampled) | train NDCG@10 | train Recall@10 | valid users (sampled) | "
          "valid NDCG@10 | valid Recall@10 | transition valid NDCG@10 |\n|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, checkpoint, tokenizer_file in runs:
        model, tokenizer, state = load_run(checkpoint, tokenizer_file, train.n_items, f"{args.dataset}/{args.split}")
        sem_ids, trie = tokenizer.sem_ids, tokenizer.trie()
        for name in buckets["valid"]:
            row = {"run": label, "checkpoint": checkpoint, "checkpoint_step": state["manifest"]["step"],
                   "split": args.split, "bucket": name, "protocol": "plain", "beam_width": args.beam_width}
            for split in ("train", "valid"):
                index = chosen[(split, name)]
                row[f"{split}_examples"], row[f"{split}_sampled"] = int(buckets[split][name].sum()), len(index)
                if len(index) == 0:
                    continue
                with torch.no_grad():
                    found = recommend(model, splits[split], sem_ids, trie, args.beam_width, TOP_K, args.batch_size,
                                      torch.device("cpu"), index=index, sort_by_length=True)["item_ids"]
                row[split] = retrieval_metrics(found, splits[split].targets[index])
            index = chosen[("valid", name)]
            if len(index):
                row["transition_valid"] = retrieval_metrics(floor[index], splits["valid"].targets[index])
            rows.append(row)
            cell = lambda split, metric: f"{row[split][metric]:.4f}" if split in row else "-"
            print(f"| {label} | {name} | {row['train_examples']:,} ({row['train_sampled']:,}) | {cell('train', 'ndcg@10')} | "
                  f"{cell('train', 'recall@10')} | {row['valid_examples']:,} ({row['valid_sampled']:,}) | "
                  f"{cell('valid', 'ndcg@10')} | {cell('valid', 'recall@10')} | {cell('transition_valid', 'ndcg@10')} |",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
