"""The tables of studies/results/sasrec_amazon.md and its JSON, from the runs of studies/sasrec_amazon.sh.

    python -m studies.sasrec_report OUT [--json studies/results/sasrec_amazon.json]

OUT holds <loss>_seed<seed>/amazon-<split>/ folders, each with train_sasrec.py's result.json and the
script's run.json. Prints markdown: the test metrics of every run under both protocols, their mean and
standard deviation over seeds (where a configuration has more than one), the floors, and each run's
learning curve (validation NDCG@10 per validation). The JSON holds one row per (run, protocol, model)
with the command, commit, machine, seed, split (the data set's train.split) and protocol beside the numbers.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from evaluation.protocols import PROTOCOLS

METRICS = ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10")


def load_runs(out: Path) -> list[dict]:
    runs = []
    for result_path in sorted(out.glob("*_seed*/amazon-*/result.json")):
        result = json.loads(result_path.read_text())
        run = json.loads((result_path.parent / "run.json").read_text())
        runs.append({**result, **run, "folder": str(result_path.parent)})
    order = {"beauty": 0, "sports": 1}
    return sorted(runs, key=lambda r: (order.get(r["split"], 9), r["loss"], r["seed"]))


def cells(metrics: dict[str, float]) -> str:
    return " | ".join(f"{metrics[m]:.4f}" for m in METRICS)


def test_table(runs: list[dict]) -> str:
    lines = ["| data | loss | seed | protocol | " + " | ".join(METRICS) + " | best step (epoch) | steps run | minutes |",
             "|---|---|---:|---|" + "---:|" * len(METRICS) + "---:|---:|---:|"]
    for r in runs:
        best_epoch = next(h["epoch"] for h in r["valid_history"] if h["step"] == r["best_step"])
        for p in PROTOCOLS:
            lines.append(f"| {r['split']} | {r['loss']} | {r['seed']} | {p} | {cells(r['test'][p]['sasrec'])} | "
                         f"{r['best_step']} ({best_epoch}) | {r['steps']}{' (early stop)' if r['stopped_early'] else ''} | "
                         f"{r['process_wall_seconds'] / 60:.1f} |")
    return "\n".join(lines)


def mean_table(runs: list[dict]) -> str:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["split"], r["loss"]), []).append(r)
    lines = ["| data | loss | seeds | protocol | " + " | ".join(METRICS) + " |",
             "|---|---|---|---|" + "---:|" * len(METRICS)]
    for (split, loss), group in groups.items():
        if len(group) < 2:
            continue
        for p in PROTOCOLS:
            stats = []
            for m in METRICS:
                values = [r["test"][p]["sasrec"][m] for r in group]
                stats.append(f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}")
            lines.append(f"| {split} | {loss} | {', '.join(str(r['seed']) for r in group)} | {p} | {' | '.join(stats)} |")
    return "\n".join(lines) if len(lines) > 2 else "(no configuration has more than one seed yet)"


def floor_table(runs: list[dict]) -> str:
    lines = ["| data | protocol | floor | " + " | ".join(METRICS) + " |", "|---|---|---|" + "---:|" * len(METRICS)]
    seen = set()
    for r in runs:
        if r["split"] in seen:
            continue  # counted on the training split: the same for every run of a data set
        seen.add(r["split"])
        for p in PROTOCOLS:
            for name in ("popularity", "transition"):
                lines.append(f"| {r['split']} | {p} | {name} | {cells(r['test'][p][name])} |")
    return "\n".join(lines)


def curve_tables(runs: list[dict]) -> str:
    parts = []
    for r in runs:
        lines = [f"{r['split']}, {r['loss']}, seed {r['seed']} (best step {r['best_step']}, marked *):", "",
                 "| step | epoch | minutes | train loss | valid NDCG@10 plain | valid NDCG@10 history skipped |",
                 "|---:|---:|---:|---:|---:|---:|"]
        for h in r["valid_history"]:
            mark = " *" if h["step"] == r["best_step"] else ""
            lines.append(f"| {h['step']}{mark} | {h['epoch']} | {h['wall_seconds'] / 60:.1f} | {h['train_loss']:.4f} | "
                         f"{h['plain/ndcg@10']:.4f} | {h['history_skipped/ndcg@10']:.4f} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def json_rows(runs: list[dict]) -> list[dict]:
    rows = []
    for r in runs:
        for p in PROTOCOLS:
            for model, metrics in r["test"][p].items():
                rows.append({"dataset": r["dataset"], "split": r["split"], "subset": "test", "protocol": p, "model": model,
                             "loss": r["loss"], "seed": r["seed"], **metrics,
                             "valid": r["best_valid"][p] if model == "sasrec" else r["valid_floors"][p][model],
                             "best_step": r["best_step"], "steps": r["steps"], "stopped_early": r["stopped_early"],
                             "select": f"valid {r['select_metric']} under {r['select_protocol']}",
                             "wall_seconds": r["process_wall_seconds"], "command": r["command"], "commit": r["commit"],
                             "dirty": r["dirty"], "machine": r["machine"]})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--json", type=Path, help="write the rows and learning curves here")
    args = parser.parse_args(argv)
    runs = load_runs(args.out)
    if not runs:
        raise SystemExit(f"no <loss>_seed<seed>/amazon-<split>/result.json under {args.out}")
    print("## Test\n\n" + test_table(runs) + "\n\n## Mean ± standard deviation over seeds (test)\n\n" + mean_table(runs)
          + "\n\n## Floors (test)\n\n" + floor_table(runs) + "\n\n## Learning curves\n\n" + curve_tables(runs))
    if args.json:
        curves = [{"split": r["split"], "subset": "valid", "loss": r["loss"], "seed": r["seed"],
                   "curve": [{k: h[k] for k in ("step", "epoch", "wall_seconds", "train_loss", "plain/ndcg@10",
                                                "history_skipped/ndcg@10")} for h in r["valid_history"]]}
                  for r in runs]
        args.json.write_text(json.dumps({"rows": json_rows(runs), "learning_curves": curves}, indent=1) + "\n")


if __name__ == "__main__":
    main()
