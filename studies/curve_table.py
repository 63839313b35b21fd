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
`--seeds K` reads the runs as arms of K seeds each, given arm after arm (`--arm NAME` once per arm), and adds the
mean curves: per validation step that all of an arm's runs reached, the mean NDCG@10 (its seeds' standard deviation),
mean Recall@10 and mean wall seconds, and the time to quality on those means (the target: the first arm's best mean).
`--json` writes every run's whole curve.jsonl, by label, for a study's committed record.
"""
from __future__ import annotations

import argparse
import json
import statistics
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
    return reach_lines([protocol_curve(run, protocol) for run in runs], labels)


def reach_lines(curves: list[list[dict]], labels: list[str], what: str = "") -> str:
    """reach_table of curves (records with step, ndcg@10, wall_seconds): a run's, or seeds' means (`what`: "mean ")."""
    target = max(r["ndcg@10"] for r in curves[0])
    whole = curves[0][-1]["wall_seconds"]
    lines = [f"target: {labels[0]}'s best {what}NDCG@10 {target:.4f}; its {what}wall seconds at its last validation "
             f"{whole:,.1f}", "", f"| run | first step >= target | {what}NDCG@10 there | {what}wall s there | "
             "share of the target run's wall s |", "|---|---:|---:|---:|---:|"]
    for curve, label in zip(curves, labels):
        hit = next((r for r in curve if r["ndcg@10"] >= target), None)
        lines.append(f"| {label} | not reached (best {max(r['ndcg@10'] for r in curve):.4f}) |  |  |  |" if hit is None else
                     f"| {label} | {hit['step']:,} | {hit['ndcg@10']:.4f} | {hit['wall_seconds']:,.1f} | "
                     f"{hit['wall_seconds'] / whole:.2f} |")
    return "\n".join(lines)


def mean_curve(runs: list[Path], protocol: str | None = None) -> list[dict]:
    """One arm's seeds averaged: per validation step that every run reached, the mean NDCG@10, Recall@10 and wall
    seconds, and `ndcg@10 sd`, the seeds' (sample) standard deviation of NDCG@10."""
    curves = [{r["step"]: r for r in protocol_curve(run, protocol)} for run in runs]
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    return [{"step": step, **{key: statistics.mean(c[step][key] for c in curves)
                              for key in ("ndcg@10", "recall@10", "wall_seconds")},
             "ndcg@10 sd": statistics.stdev(c[step]["ndcg@10"] for c in curves)} for step in steps]


def mean_tables(runs: list[Path], seeds: int, arms: list[str], protocol: str | None = None) -> str:
    """Markdown: the arms' mean curves step by step (mean NDCG@10 (sd), mean Recall@10, mean wall s), then the
    time to the first arm's best mean NDCG@10 on those means."""
    curves = [mean_curve(runs[i:i + seeds], protocol) for i in range(0, len(runs), seeds)]
    by_step = [{r["step"]: r for r in curve} for curve in curves]
    lines = [f"mean of {seeds} seeds: NDCG@10 (sd), Recall@10 (wall s)", "",
             "| step | " + " | ".join(arms) + " |", "|---:|" + "---:|" * len(arms)]
    for step in sorted(set().union(*by_step)):
        cells = [f"{c[step]['ndcg@10']:.4f} ({c[step]['ndcg@10 sd']:.4f}), {c[step]['recall@10']:.4f} "
                 f"({c[step]['wall_seconds']:,.0f} s)" if step in c else "" for c in by_step]
        lines.append(f"| {step:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + reach_lines(curves, arms, what="mean ")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--label", action="append", help="one per run, in order (default: the run's save_dir name)")
    parser.add_argument("--protocol", choices=PROTOCOLS, help="the ranking to read (default: the one each run selected on)")
    parser.add_argument("--by-step", action="store_true", help="also a table of every validation step, runs side by side")
    parser.add_argument("--reach-first", action="store_true",
                        help="also when each run first reaches the first run's best NDCG@10, in wall time")
    parser.add_argument("--seeds", type=int, help="the runs are arms of this many seeds each, arm after arm: "
                        "also their mean curves")
    parser.add_argument("--arm", action="append", help="with --seeds: one name per arm, in order")
    parser.add_argument("--json", type=Path, help="also write {label: the run's validation records} here")
    args = parser.parse_args(argv)
    labels = args.label or [run.parent.name for run in args.runs]
    if len(labels) != len(args.runs):
        raise SystemExit(f"{len(labels)} --label for {len(args.runs)} runs")
    if args.seeds is not None and (args.seeds < 2 or len(args.runs) % args.seeds
                                   or len(args.arm or []) != len(args.runs) // args.seeds):
        raise SystemExit(f"--seeds {args.seeds}: give arms of at least 2 seeds each, arm after arm, and one --arm "
                         f"per arm ({len(args.runs)} runs, {len(args.arm or [])} --arm)")
    print(HEADER)
    for run, label in zip(args.runs, labels):
        print(curve_row(run, label, args.protocol))
    if args.by_step:
        print("\n" + step_table(args.runs, labels, args.protocol))
    if args.reach_first:
        print("\n" + reach_table(args.runs, labels, args.protocol))
    if args.seeds is not None:
        print("\n" + mean_tables(args.runs, args.seeds, args.arm, args.protocol))
    if args.json:
        args.json.write_text(json.dumps({label: read_curve(run) for run, label in zip(args.runs, labels)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
