"""Evaluate a trained TIGER model next to the popularity and transition baselines.

    python evaluate.py configs/decoder_amazon.gin [--split test] [--gin 'train.X=...' ...]
                       [--write-topk FILE] [--user USER_ID] [--beam-width N] [--batch-size N] [--debug]

Reads the same gin file and --gin flags as train_decoder.py: paths and evaluation settings come
from its `train` bindings. Loads <save_dir>/<dataset>-<split>/best.pt (chosen on validation) and
stage 1's tokenizer, runs trie-constrained beam search for every user of the split and prints
Recall@1/5/10 and NDCG@5/10, the share of invalid IDs, catalogue coverage, and the same for two
floors counted on the training split: popularity (most frequent training targets), and the
transition baseline ("the items that most often followed the user's last item",
evaluation/transition.py). With train.eval_exclude_history all three skip the user's history items
(in Amazon and MovieLens a user never meets the same item twice). `--user N` beam-searches that
user alone and prints their history, held-out item and top-10 with titles; `--write-topk FILE`
writes that for every user (as JSON lines). Last stdout line: one JSON object.
"""
from __future__ import annotations

import difflib
import json
import sys
import time
from typing import Any

import gin
import torch

from data.processed import SeqData, as_dataset, load_processed
from runtime.atomic_io import atomic_write_text
from runtime.checkpointing import check_trained_with, load_checkpoint, recorded_bindings
from runtime.errors import ConfigError, MissingFileError, exit_on_user_error
from runtime.gin_cli import binding_source, check_choice, check_positive, entry_point_parser, parse_gin_args
from modules.model import EncoderDecoderRetrievalModel
from runtime import precision
from evaluation.protocols import PROTOCOLS, protocol_name
from evaluation.report import REPORTED, evaluate_split
from evaluation.retrieval import METRIC_KS, recommend, transition_prior_table
from modules.tokenizer import SemanticIdTokenizer
from runtime.run_folder import existing_tokenizer_path, run_dir

PROTOCOL_TITLES = {"plain": "plain (the paper's protocol)", "history_skipped": "history skipped"}
# The decoder bindings evaluate.py reads (listed by --help).
READS = ("dataset_folder", "dataset", "split", "cache_dir", "tokenizer_dir", "save_dir", "max_seq_len", "device",
         "num_threads", "precision", "eval_beam_width", "eval_batch_size", "eval_sort_by_length",
         "eval_exclude_history", "eval_transition_prior")


@gin.configurable("train")
def decoder_bindings(**bindings: Any) -> dict[str, Any]:
    """Stands in for train_decoder.train() while a decoder config is read, so that this script
    imports no training script. gin accepts any `train.X` here; the names are then checked against
    the bindings the run recorded in best.pt (every parameter of train_decoder.train(): the configs
    bind them all), so the training script's signature stays the one list of parameters."""
    return bindings


def run_config(config: str, flags: list[str]) -> tuple[dict[str, Any], dict]:
    """The decoder run's settings and its best.pt: the bindings the run recorded, overridden by the
    config file and --gin flags given here (e.g. another dataset_folder or device)."""
    given = gin.get_bindings(decoder_bindings)
    for name in ("save_dir", "dataset", "split"):
        if name not in given:
            raise ConfigError(f"{config} does not bind train.{name}: evaluate.py reads a decoder config "
                              "(configs/decoder_*.gin)")
    best_path = run_dir(given["save_dir"], given["dataset"], given["split"]) / "best.pt"
    if not best_path.is_file():
        raise MissingFileError(f"no checkpoint at {best_path}: run train_decoder.py with this config first "
                               f"(train.save_dir={given['save_dir']!r})")
    state = load_checkpoint(best_path, map_location="cpu")
    recorded = recorded_bindings(state["manifest"])
    for name in given:
        if name not in recorded:
            if name in READS:
                continue  # an evaluation setting newer than the run (e.g. eval_exclude_history): taken as given
            if binding_source(name, config, flags).startswith("set in"):
                continue  # a config file's parameter newer than the run (e.g. micro_batch_size): evaluation never reads it
            close = difflib.get_close_matches(name, recorded, n=1)
            raise ConfigError(f"train.{name} is not a parameter of the decoder run in {best_path}"
                              + (f" (did you mean train.{close[0]}?)" if close else "")
                              + f" ({binding_source(name, config, flags)})")
    cfg = {**recorded, **given}
    for name in READS:
        if name not in cfg:  # e.g. a checkpoint from before the parameter existed
            raise ConfigError(f"{best_path} records no train.{name} and {config} does not bind it: "
                              f"add --gin 'train.{name}=...' (see train_decoder.py's train())")
    return cfg, state


def main(argv: list[str] | None = None) -> dict:
    command_line = argv is None
    argv = sys.argv[1:] if command_line else list(argv)
    with exit_on_user_error(command_line, argv):  # on the command line: one or two lines, exit status 2
        return evaluate(argv)


def evaluate(argv: list[str]) -> dict:
    parser = entry_point_parser(__doc__, READS)
    parser.add_argument("--split", choices=("valid", "test"), default="test", help="the split to evaluate (default: test)")
    parser.add_argument("--write-topk", metavar="FILE",
                        help="write every user's history, held-out item and top-10 (with titles) as JSON lines")
    parser.add_argument("--user", type=int, metavar="USER_ID",
                        help="beam-search this user (0-based id) alone and print their recommendations")
    parser.add_argument("--beam-width", type=int, metavar="N", help="beams, >= 10 (default: train.eval_beam_width)")
    parser.add_argument("--batch-size", type=int, metavar="N", help="users per beam-search chunk (default: train.eval_batch_size)")
    gin.clear_config()
    opts = parse_gin_args(decoder_bindings, argv, parser=parser)
    cfg, state = run_config(opts.config, opts.gin)
    top_k = max(METRIC_KS)
    beam_width = opts.beam_width if opts.beam_width is not None else cfg["eval_beam_width"]
    batch_size = opts.batch_size if opts.batch_size is not None else cfg["eval_batch_size"]
    if beam_width < top_k:
        raise ConfigError(f"beam width {beam_width} (--beam-width or train.eval_beam_width): must be >= {top_k}")
    if batch_size < 1:
        raise ConfigError(f"batch size {batch_size} (--batch-size or train.eval_batch_size): must be positive")
    check_positive(num_threads=cfg["num_threads"])
    try:  # a recorded value passed train_decoder.py's own check: a bad one was given here
        check_choice(precision=(cfg["precision"], precision.PRECISIONS))
    except ConfigError as e:
        raise ConfigError(f"{e} ({binding_source('precision', opts.config, opts.gin)})", "precision") from e
    if cfg["num_threads"] is not None:
        torch.set_num_threads(cfg["num_threads"])
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg["device"] == "auto" else cfg["device"])

    tokenizer_file = existing_tokenizer_path(cfg["tokenizer_dir"], cfg["dataset"], cfg["split"])
    tokenizer = SemanticIdTokenizer.load(tokenizer_file)
    data_args = (cfg["dataset_folder"], cfg["dataset"], cfg["split"])
    data = SeqData(*data_args, opts.split, cfg["max_seq_len"], cfg["cache_dir"])
    best_path = run_dir(cfg["save_dir"], cfg["dataset"], cfg["split"]) / "best.pt"
    check_trained_with(best_path, state, tokenizer_file, tokenizer.n_items, data.n_items, f"{cfg['dataset']}/{cfg['split']}")
    model = EncoderDecoderRetrievalModel(**state["model_kwargs"]).to(dev)
    model.load_state_dict(state["model"])
    model.eval()
    trie = tokenizer.trie().to(dev)
    train_data = SeqData(*data_args, "train", cfg["max_seq_len"], cfg["cache_dir"])  # the floors count on it only
    prior = dict(prior_weight=cfg["eval_transition_prior"],  # the search's transition prior, counted on train too
                 successors=transition_prior_table(train_data) if cfg["eval_transition_prior"] else None)
    search = dict(model=model, data=data, sem_ids=tokenizer.sem_ids, trie=trie, beam_width=beam_width, top_k=top_k,
                  batch_size=batch_size, device=dev, sort_by_length=cfg["eval_sort_by_length"],
                  exclude_history=cfg["eval_exclude_history"], **prior)
    result: dict[str, Any] = {"split": opts.split, "checkpoint": str(best_path), "checkpoint_step": state["manifest"]["step"],
                              "beam_width": beam_width, "transition_prior": cfg["eval_transition_prior"]}

    titles = None
    if opts.write_topk or opts.user is not None:
        titles = load_processed(cfg["dataset_folder"], as_dataset(cfg["dataset"]), cfg["split"], cfg["cache_dir"]).titles

    def user_record(row: int, items: list[int], scores: list[float]) -> dict:
        entry = lambda i, s=None: {"item_id": int(i), "title": titles[i], **({} if s is None else {"score": round(float(s), 4)})}
        history = data.history_batch(torch.tensor([row]))[0]
        return {"user_id": int(data.user_ids[row]), "protocol": protocol_name(cfg["eval_exclude_history"]),
                "history": [entry(i) for i in history[history >= 0].tolist()],
                "target": entry(int(data.targets[row])),
                "recommendations": [entry(i, s) for i, s in zip(items, scores) if i >= 0]}

    user_row = None
    if opts.user is not None:
        rows = torch.nonzero(data.user_ids == opts.user).flatten()
        if len(rows) == 0:
            raise ConfigError(f"--user {opts.user}: no such user in the {opts.split} split (ids are 0-based, < {data.n_users})")
        user_row = int(rows[0])

    if opts.user is not None and not opts.write_topk:  # that user alone: one beam search, no metrics
        with precision.autocast(dev, cfg["precision"]):
            found = recommend(**search, index=torch.tensor([user_row]))
        result["user"] = user_record(user_row, found["item_ids"][0].tolist(), found["scores"][0].tolist())
        print_user(result["user"], opts.split)
        print(json.dumps(result))
        return result

    start = time.time()
    with precision.autocast(dev, cfg["precision"]):  # the precision validation chose best.pt with
        report = evaluate_split(model, data, tokenizer.sem_ids, trie, beam_width=beam_width, batch_size=batch_size,
                                device=dev, sort_by_length=cfg["eval_sort_by_length"], train=train_data, progress=True,
                                **prior)
    seconds = time.time() - start
    found_by_protocol = report.pop("found")  # this process's users' top-K under each protocol
    for protocol, found in found_by_protocol.items():
        # Validity, checked independently of the beam search's own bookkeeping: every returned
        # ID (a slot with a finite score) must be some item's full ID, and that item's.
        returned = torch.isfinite(found["scores"])
        looked_up = trie.lookup(found["sem_ids"][returned].to(dev)).cpu()
        report[protocol]["tiger"]["invalid_id_share"] = (
            float((looked_up != found["item_ids"][returned]).float().mean()) if returned.any() else 0.0)
        for name, row in report[protocol].items():  # the reported columns, in a fixed order
            report[protocol][name] = {k: row[k] for k in (*REPORTED, "invalid_id_share", f"coverage@{top_k}") if k in row}
    selected = protocol_name(cfg["eval_exclude_history"])
    result.update({"users": report["users"], **{protocol: report[protocol] for protocol in PROTOCOLS},
                   # the config's protocol (train.eval_exclude_history), the one validation chose best.pt on:
                   "protocol": selected, **report[selected], "eval_seconds": round(seconds, 1)})
    print(f"{opts.split} split, {len(data):,} users, beam {beam_width}, {seconds:.1f}s for both protocols "
          f"(best.pt chosen on {selected})", file=sys.stderr)
    columns = [(protocol, name) for protocol in PROTOCOLS for name in ("tiger", "popularity", "transition")]
    print(f"{'':<18}" + "".join(f"{PROTOCOL_TITLES[p]:<36}" for p in PROTOCOLS), file=sys.stderr)
    print(f"{'metric':<18}" + "".join(f"{n.replace('tiger', 'TIGER'):>12}" for _, n in columns), file=sys.stderr)
    for k in result["plain"]["tiger"]:
        print(f"{k:<18}" + "".join(f"{result[p][n][k]:>12.4f}" if k in result[p][n] else " " * 12 for p, n in columns),
              file=sys.stderr)

    ranked, scores = found_by_protocol[selected]["item_ids"], found_by_protocol[selected]["scores"]
    record = lambda row: user_record(row, ranked[row].tolist(), scores[row].tolist())
    if opts.write_topk:
        atomic_write_text("".join(json.dumps(record(r)) + "\n" for r in range(len(data))), opts.write_topk)
        result["topk_file"] = opts.write_topk
    if user_row is not None:
        result["user"] = record(user_row)
        print_user(result["user"], opts.split)
    print(json.dumps(result))
    return result


def print_user(record: dict, split: str) -> None:
    print(f"\nuser {record['user_id']}, history (oldest first):", file=sys.stderr)
    for it in record["history"]:
        print(f"  {it['item_id']:>6}  {it['title']}", file=sys.stderr)
    print(f"held-out {split} item: {record['target']['item_id']}  {record['target']['title']}", file=sys.stderr)
    print("recommendations:", file=sys.stderr)
    for rank, it in enumerate(record["recommendations"], 1):
        hit = "  <- held-out item" if it["item_id"] == record["target"]["item_id"] else ""
        print(f"  {rank:>2}. {it['item_id']:>6}  {it['score']:>8.3f}  {it['title']}{hit}", file=sys.stderr)


if __name__ == "__main__":
    main()
