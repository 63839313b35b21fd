"""Stage-2 runs side by side, from their curve.jsonl: the study tables of studies/results/.

    python -m studies.curve_table RUN [RUN ...] [--label NAME ...] [--protocol plain|history_skipped] [--by-step]
                                  [--reach-first] [--json CURVES.json]

Per run (a <save_dir>/<dataset>-<split> folder of train_decoder.py): the best validation NDCG@10
and its step, Recall@10 there, the last validation's NDCG@10 (a drop from the best means
validation fell while training went on), the first code's NLL at the best step against the
history-blind prior (baselines.json), coverage@10 and the most common top-1's share there, and the
wall time to the best step and in all. The metrics are those of the protocol the run selected on,
or of `--protocol` (plain: the paper's ranking); "best" is then the best step on that protocol.
`--by-step` adds one table of every validation step: each run's NDCG@10 and first-code NLL there
(runs stopped early leave their later cells empty), so that arms compare at equal steps.
`--reach-first` adds time to quality against the first run (issue 34: "reaches the recipe's validation NDCG@10
in at most a third of its wall time"): for each run, the first validation step at or above the first run's best
NDCG@10, its wall seconds, and those as a share of the first run's wall seconds at its last validation.
`--json` writes every run's whole curve.jsonl, by label, for a study's committed record.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from evaluation.protocols import PROTOCOLS
from studies.plot_curves import read_curve

HEADER = ("| run | best NDCG@10 (step) | Recall@10 there | last NDCG@10 (step) | first-code NLL / prior | "
          "coverage@10 | top-1 share | minutes to best / in all |\n|---|---:|---:|---:|---:|---:|---:|---:|")


def protocol_curve(run: Path, protocol: str | None = None) -> list[dict]:
    """The run's validation records with the ranking metrics of `protocol` (None: the one it selected on) on
    top; the learning-health fields (loss, NLL, wall time) are shared by both protocols."""
    curve = read_curve(run)
    if protocol is None:
        return curve
    if any(protocol not in record for record in curve):
        raise SystemExit(f"{run / 'curve.jsonl'}: no {protocol} metrics (a run written before both protocols were "
                         "recorded); leave out --protocol")
    return [{**record, **record[protocol]} for record in curve]


def curve_row(run: Path, label: str, protocol: str | None = None) -> str:
    curve = protocol_curve(run, protocol)
    best = max(curve, key=lambda r: r["ndcg@10"])  # first maximum: the step train_decoder.py keeps
    last = curve[-1]
    baselines = run / "baselines.json"
    prior = json.loads(baselines.read_text())["prior_nll"][0] if baselines.is_file() else float("nan")
    return (f"| {label} | {best['ndcg@10']:.4f} ({best['step']}) | {best['recall@10']:.4f} | "
            f"{last['ndcg@10']:.4f} ({last['step']}) | {best['nll_level_0']:.2f} / {prior:.2f} | "
            f"{best['coverage@10']:.3f} | {best['top1_share']:.3f} | "
            f"{best['wall_seconds'] / 60:.1f} / {last['wall_seconds'] / 60:.1f} |")


def step_table(runs: list[Path], labels: list[str], protocol: str | None = None) -> str:
    """Markdown: one row per validation step of any run; per run its NDCG@10 / first-code NLL at that step."""
    curves = [{r["step"]: r for r in protocol_curve(run, protocol)} for run in runs]
    steps = sorted(set().union(*curves))
    lines = ["| step | " + " | ".join(f"{label} NDCG@10 / NLL" for label in labels) + " |",
             "|---:|" + "---:|" * len(labels)]
    for step in steps:
        cells = [f"{c[step]['ndcg@10']:.4f} / {c[step]['nll_level_0']:.2f}" if step in c else "" for c in curves]
        lines.append(f"| {step:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reach_table(runs: list[Path], labels: list[str], protocol: str | None = None) -> str:
    """Markdown: per run, when it first reaches the first run's best NDCG@10 (step, wall seconds, share of the
    first run's whole wall time); "not reached" where no validation of it does."""
    curves = [protocol_curve(run, protocol) for run in runs]
    target = max(r["ndcg@10"] for r in curves[0])
    whole = curves[0][-1]["wall_seconds"]
    lines = [f"target: {labels[0]}'s best NDCG@10 {target:.4f}; its wall seconds at its last validation {whole:,.1f}",
             "", "| run | first step >= target | NDCG@10 there | wall s there | share of the target run's wall s |",
             "|---|---:|---:|---:|---:|"]
    for curve, label in zip(curves, labels):
        hit = next((r for r in curve if r["ndcg@10"] >= target), None)
        lines.append(f"| {label} | not reached (best {max(r['ndcg@10'] for r in curve):.4f}) |  |  |  |" if hit is None else
                     f"| {label} | {hit['step']:,} | {hit['ndcg@10']:.4f} | {hit['wall_seconds']:,.1f} | "
                     f"{hit['wall_seconds'] / whole:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--label", action="append", help="one per run, in order (default: the run's save_dir name)")
    parser.add_argument("--protocol", choices=PROTOCOLS, help="the ranking to read (default: the one each run selected on)")
    parser.add_argument("--by-step", action="store_true", help="also a table of every validation step, runs side by side")
    parser.add_argument("--reach-first", action="store_true",
                        help="also when each run first reaches the first run's best NDCG@10, in wall time")
    parser.add_argument("--json", type=Path, help="also write {label: the run's validation records} here")
    args = parser.parse_args(argv)
    labels = args.label or [run.parent.name for run in args.runs]
    if len(labels) != len(args.runs):
        raise SystemExit(f"{len(labels)} --label for {len(args.runs)} runs")
    print(HEADER)
    for run, label in zip(args.runs, labels):
        print(curve_row(run, label, args.protocol))
    if args.by_step:
        print("\n" + step_table(args.runs, labels, args.protocol))
    if args.reach_first:
        print("\n" + reach_table(args.runs, labels, args.protocol))
    if args.json:
        args.json.write_text(json.dumps({label: read_curve(run) for run, label in zip(args.runs, labels)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
