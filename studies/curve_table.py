"""One markdown row per stage-2 run, from its curve.jsonl: the study tables of bench/results/.

    python -m studies.curve_table RUN [RUN ...] [--label NAME ...]

Per run (a <save_dir>/<dataset>-<split> folder of train_decoder.py): the best validation NDCG@10
and its step, Recall@10 there, the last validation's NDCG@10 (a drop from the best means
validation fell while training went on), the first code's NLL at the best step against the
history-blind prior (baselines.json), coverage@10 and the most common top-1's share there, and the
wall time to the best step and in all.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from studies.plot_curves import read_curve

HEADER = ("| run | best NDCG@10 (step) | Recall@10 there | last NDCG@10 (step) | first-code NLL / prior | "
          "coverage@10 | top-1 share | minutes to best / in all |\n|---|---:|---:|---:|---:|---:|---:|---:|")


def curve_row(run: Path, label: str) -> str:
    curve = read_curve(run)
    best = max(curve, key=lambda r: r["ndcg@10"])  # first maximum: the step train_decoder.py keeps
    last = curve[-1]
    baselines = run / "baselines.json"
    prior = json.loads(baselines.read_text())["prior_nll"][0] if baselines.is_file() else float("nan")
    return (f"| {label} | {best['ndcg@10']:.4f} ({best['step']}) | {best['recall@10']:.4f} | "
            f"{last['ndcg@10']:.4f} ({last['step']}) | {best['nll_level_0']:.2f} / {prior:.2f} | "
            f"{best['coverage@10']:.3f} | {best['top1_share']:.3f} | "
            f"{best['wall_seconds'] / 60:.1f} / {last['wall_seconds'] / 60:.1f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--label", action="append", help="one per run, in order (default: the run's save_dir name)")
    args = parser.parse_args(argv)
    labels = args.label or [run.parent.name for run in args.runs]
    if len(labels) != len(args.runs):
        raise SystemExit(f"{len(labels)} --label for {len(args.runs)} runs")
    print(HEADER)
    for run, label in zip(args.runs, labels):
        print(curve_row(run, label))


if __name__ == "__main__":
    main()
