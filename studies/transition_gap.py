"""Where TIGER wins and loses against the transition baseline, by what the training split knows about
each user's (last history item -> held-out item) pair.

    python evaluate.py configs/decoder_amazon_cpu.gin --split valid --write-topk topk.jsonl [--gin ...]
    python -m studies.transition_gap --root ../shared/data/amazon --cache-dir cache topk.jsonl [topk2.jsonl ...] \
        [--label NAME ...] [--eval-split valid]

One markdown row per bucket and top-k file: users, their share, and NDCG@10 / Recall@10 of the model
(read from evaluate.py's --write-topk file) and of the transition baseline (recomputed here exactly as
evaluate.py does, under the ranking protocol the file names; older files: history skipped unless
--keep-history). The buckets: the pair was a training example
at least twice, once, never (but the last item has training successors), or the last item never ends a
training history. The transition baseline can only win where the pair was seen; the rows say how much
of the model's gap to it sits there. With `--tokenizer <stage 1's semantic_ids.pt>`, a second table: of the users
each list misses (target not in the top 10), the share whose top 10 holds an item with the target's first code,
its first two codes, its first three: the level at which the search left the target's branch.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import Tensor

from data.processed import SeqData
from evaluation.retrieval import baseline_topk, retrieval_metrics
from modules.tokenizer import SemanticIdTokenizer
from studies.cli import add_data_arguments

TOP_K = 10


def pair_buckets(train_last: Tensor, train_targets: Tensor, last: Tensor, targets: Tensor,
                 n_items: int, besides_itself: bool = False) -> dict[str, Tensor]:
    """Training examples (last [M], target [M]) and evaluated users (last [N], target [N]) ->
    {bucket name: bool mask [N]}; the buckets partition the users. besides_itself: the evaluated rows are
    training examples themselves, each counted once less (its own occurrence is not "seen")."""
    pairs, counts = torch.unique(train_last * n_items + train_targets, return_counts=True)  # sorted
    key = last * n_items + targets  # [N]
    at = torch.searchsorted(pairs, key).clamp(max=len(pairs) - 1)
    seen = torch.where(pairs[at] == key, counts[at], 0)  # [N] times the pair was a training example
    seen = seen - 1 if besides_itself else seen
    has_successors = torch.bincount(train_last, minlength=n_items)[last] > 0  # [N]
    return {"pair seen >= 2 times in training": seen >= 2,
            "pair seen once": seen == 1,
            "pair unseen, last item has successors": (seen == 0) & has_successors,
            "last item never ends a training history": ~has_successors}


def read_topk(path: str | Path, targets: Tensor) -> tuple[Tensor, str | None]:
    """evaluate.py --write-topk JSON lines (one per user, the split's order) -> (item ids [N, TOP_K] (-1 pads),
    the ranking protocol the lists were made under, None for files from before evaluate.py named it)."""
    rows, protocol = [], None
    with open(path) as f:
        for line_number, line in enumerate(f, 1):
            record = json.loads(line)
            items = [r["item_id"] for r in record["recommendations"]][:TOP_K]
            protocol = record.get("protocol", protocol)
            if line_number > len(targets) or record["target"]["item_id"] != int(targets[line_number - 1]):
                raise SystemExit(f"{path}:{line_number}: not the --eval-split's user order (another split or data set?)")
            rows.append(items + [-1] * (TOP_K - len(items)))
    if len(rows) != len(targets):
        raise SystemExit(f"{path}: {len(rows)} users, the split has {len(targets)}")
    return torch.tensor(rows), protocol


def prefix_hits(ranked: Tensor, targets: Tensor, sem_ids: Tensor, depth: int) -> Tensor:
    """ranked [N, K] item ids (-1 pads), targets [N], sem_ids [n_items, T] -> bool [N]: some listed item has the
    target's first `depth` codes."""
    listed = sem_ids[ranked.clamp(min=0)][..., :depth]  # [N, K, depth]
    same = (listed == sem_ids[targets][:, None, :depth]).all(dim=-1) & (ranked >= 0)  # [N, K]
    return same.any(dim=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("topk_files", nargs="+", help="evaluate.py --write-topk outputs")
    add_data_arguments(parser)
    parser.add_argument("--max-seq-len", type=int, default=20, help="train.max_seq_len of the evaluated run")
    parser.add_argument("--eval-split", choices=("valid", "test"), default="valid")
    parser.add_argument("--keep-history", action="store_true",
                        help="for top-K files that do not name their protocol: the run bound train.eval_exclude_history=False")
    parser.add_argument("--label", action="append", help="one per file, in order (default: the file name)")
    parser.add_argument("--tokenizer", help="the run's semantic_ids.pt: adds the table of misses by shared code prefix")
    args = parser.parse_args(argv)
    labels = args.label or [Path(p).stem for p in args.topk_files]
    if len(labels) != len(args.topk_files):
        parser.error(f"{len(labels)} --label for {len(args.topk_files)} files")

    data_args = (args.root, args.dataset, args.split)
    train = SeqData(*data_args, "train", args.max_seq_len, args.cache_dir)
    data = SeqData(*data_args, args.eval_split, args.max_seq_len, args.cache_dir)
    sem_ids = None if args.tokenizer is None else SemanticIdTokenizer.load(args.tokenizer).sem_ids  # checked before any output
    if sem_ids is not None and len(sem_ids) != data.n_items:
        raise SystemExit(f"{args.tokenizer}: {len(sem_ids)} items, {args.split} has {data.n_items}")
    transition = {skip: baseline_topk(train, data, TOP_K, exclude_history=skip)["transition"] for skip in (False, True)}
    buckets = pair_buckets(train.last_items, train.targets, data.last_items, data.targets, train.n_items)
    rows = [*buckets.items(), ("all", torch.ones(len(data), dtype=torch.bool))]  # each table's rows: name, users [N]
    print(f"| model | bucket ({args.eval_split}) | users | share | NDCG@10 | transition NDCG@10 | Recall@10 | "
          "transition Recall@10 |\n|---|---|---:|---:|---:|---:|---:|---:|")
    ranked_files = [read_topk(path, data.targets) for path in args.topk_files]
    for label, (ranked, protocol) in zip(labels, ranked_files):
        skip = protocol == "history_skipped" if protocol is not None else not args.keep_history  # the floor ranks alike
        for name, mask in rows:
            if not mask.any():
                continue
            model = retrieval_metrics(ranked[mask], data.targets[mask])
            floor = retrieval_metrics(transition[skip][mask], data.targets[mask])
            print(f"| {label} | {name} | {int(mask.sum()):,} | {mask.float().mean():.1%} | {model['ndcg@10']:.4f} | "
                  f"{floor['ndcg@10']:.4f} | {model['recall@10']:.4f} | {floor['recall@10']:.4f} |")
    if sem_ids is None:
        return
    print(f"\n| model | bucket ({args.eval_split}) | users missed (target not in the top {TOP_K}) | of those, the top "
          f"{TOP_K} holds the target's first code | first two | first three |\n|---|---|---:|---:|---:|---:|")
    for label, (ranked, _) in zip(labels, ranked_files):
        missed = ~(ranked == data.targets[:, None]).any(dim=1)  # [N]
        for name, mask in rows:
            users = mask & missed
            if not users.any():
                continue
            shares = [prefix_hits(ranked[users], data.targets[users], sem_ids, d).float().mean() for d in (1, 2, 3)]
            print(f"| {label} | {name} | {int(users.sum()):,} ({users.sum() / mask.sum():.1%}) | "
                  + " | ".join(f"{v:.1%}" for v in shares) + " |")


if __name__ == "__main__":
    main()
