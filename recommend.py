"""Recommendations from a trained TIGER model, in the data set's own ids, with titles.

    python recommend.py MODEL --history ID,ID,ID [-k 10] [--protocol plain|history_skipped] [--json]
    python recommend.py MODEL --user USER_ID [--split all|valid|test] [-k 10] [--protocol ...] [--json]
    python recommend.py RUN_FOLDER --export FOLDER

MODEL is a decoder run folder (<save_dir>/<dataset>-<split>, holding best.pt: its data set and stage 1's
tokenizer are found from the bindings best.pt recorded) or a model folder written by --export, which holds
everything needed and is read without the data set, its cache or the runs. Ids are the data set's own:
Amazon ASINs and reviewer ids, MovieLens movie and user ids, your data set's strings.

--history: the items, oldest first, comma-separated. --user: that user's history in the data set (a run folder
only): with --split all (default) every item they have, i.e. what they would be recommended next; with valid or
test the history that split evaluates with, and its held-out item is marked (evaluate.py's list for the user).
--protocol: plain ranks every item, history_skipped never the history's (default: the one the run chose
best.pt on). Prints the history and the top-k with scores and titles; --json prints one JSON object instead.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch

from evaluation.protocols import PROTOCOLS
from runtime.errors import DEBUG_ENV, ConfigError, exit_on_user_error
from serving import Recommender, load_recommender
from serving.recommender import USER_SPLITS


def main(argv: list[str] | None = None) -> dict:
    command_line = argv is None
    argv = sys.argv[1:] if command_line else list(argv)
    with exit_on_user_error(command_line, argv):  # on the command line: one line, exit status 2
        return recommend(argv)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"A missing or damaged model, an unknown id or a bad argument prints one line and "
                                       f"exits with status 2; --debug or {DEBUG_ENV}=1 shows the traceback.")
    p.add_argument("model", help="a decoder run folder (holding best.pt) or a model folder written by --export")
    p.add_argument("--history", metavar="ID,ID,...", help="the items of a history, oldest first, comma-separated")
    p.add_argument("--user", metavar="USER_ID", help="a user of the data set, by their own id (run folders only)")
    p.add_argument("--split", choices=USER_SPLITS, default="all",
                   help="with --user: all of their items (default), or the valid/test split's history")
    p.add_argument("-k", "--top-k", type=int, default=10, metavar="K", help="how many items (default 10)")
    p.add_argument("--protocol", choices=PROTOCOLS, help="default: the protocol the run chose best.pt on")
    p.add_argument("--json", action="store_true", help="print one JSON object (for machines) instead of the table")
    p.add_argument("--export", metavar="FOLDER", help="write a self-contained model folder here (a new folder)")
    p.add_argument("--dataset-folder", help="run folders: the data set's root, when it moved from the recorded one")
    p.add_argument("--cache-dir", help="run folders: the processed cache, when it moved")
    p.add_argument("--tokenizer-dir", help="run folders: stage 1's save_dir, when it moved")
    p.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda when there is one)")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads on the CPU")
    p.add_argument("--debug", action="store_true", help=f"show the traceback of an error (or set {DEBUG_ENV}=1)")
    return p


def recommend(argv: list[str]) -> dict:
    args, extra = parser().parse_known_args(argv)
    if extra:
        raise ConfigError(f"unknown argument(s) {' '.join(extra)} (python recommend.py --help lists them)")
    if args.history is None and args.user is None and args.export is None:
        raise ConfigError("nothing to do: give --history ID,ID,..., --user USER_ID or --export FOLDER")
    if args.history is not None and args.user is not None:
        raise ConfigError("--history and --user both given: ask with one of them")
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads {args.threads}: must be positive")
        torch.set_num_threads(args.threads)
    moved = {name: getattr(args, name) for name in ("dataset_folder", "cache_dir", "tokenizer_dir")
             if getattr(args, name) is not None}
    rec = load_recommender(args.model, args.device, **moved)
    result: dict[str, Any] = {"model": args.model, "dataset": rec.name, "step": rec.source.get("step")}
    if args.export is not None:
        result["export"] = str(rec.export(args.export))
        if not args.json:
            print(f"wrote {result['export']}: a self-contained model folder ({rec!r})")
    if args.history is None and args.user is None:
        if args.json:
            print(json.dumps(result))
        return result

    held_out = None
    if args.user is not None:
        history, held_out = rec.user_history(args.user, args.split)
    else:
        history = [i.strip() for i in args.history.split(",") if i.strip()]
    protocol = args.protocol or rec.protocol
    found = rec.recommend(history, args.top_k, protocol=protocol, user=args.user)
    entry = lambda i: {"item_id": i, "title": rec.titles[rec.item_index[i]]}
    result.update({"protocol": protocol, "k": args.top_k, "user": args.user,
                   "split": args.split if args.user is not None else None,
                   "history": [entry(i) for i in history], "held_out": None if held_out is None else entry(held_out),
                   "recommendations": [{"item_id": r.item_id, "title": r.title, "score": r.score} for r in found]})
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print_answer(result, rec)
    return result


def print_answer(result: dict, rec: Recommender) -> None:
    who = "the history given"
    if result["user"] is not None:
        who = f"user {result['user']}" + (f" ({result['split']} split)" if result["split"] != "all" else "")
    print(f"{rec.name}, best.pt of step {result['step']}, protocol {result['protocol']}: top {result['k']} for {who}")
    width = max(len(i["item_id"]) for i in result["history"] + result["recommendations"])
    shown = rec.max_seq_len  # the model reads the most recent max_seq_len items: older ones are only listed
    print(f"history, oldest first ({len(result['history'])} items; the model reads the last {shown}):")
    for it in result["history"]:
        print(f"  {it['item_id']:<{width}}  {it['title']}")
    if result["held_out"] is not None:
        print(f"held-out {result['split']} item: {result['held_out']['item_id']}  {result['held_out']['title']}")
    print("recommendations (score: log-probability):")
    for rank, it in enumerate(result["recommendations"], 1):
        hit = "  <- held-out item" if result["held_out"] and it["item_id"] == result["held_out"]["item_id"] else ""
        print(f"  {rank:>2}. {it['item_id']:<{width}}  {it['score']:>8.3f}  {it['title']}{hit}")


if __name__ == "__main__":
    main()
