"""studies/transition_prior.sh's outputs -> the rule's decision (studies/results/transition_prior_rule.txt) and
one JSON: the validation grid of every run (studies/successor_prior.py) and, once read, the test (evaluate.py,
W = 0 and the chosen W, both protocols, every seed, mean and standard deviation, the floors beside them).

    python -m studies.transition_prior_report /work/runs/p15 [--json studies/results/transition_prior_beauty_sports.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from evaluation.protocols import PROTOCOLS
from studies.recipe_seeds import last_json

SEEDS, SPLITS, RUNS = (42, 43, 44), ("beauty", "sports"), ("recipe", "history_bias")
GRID = (0.5, 1.0, 1.5, 2.0, 3.0)
METRICS = ("recall@10", "ndcg@10")
BAR, GUARD = 0.03, -0.02  # the rule: every run >= +3% plain NDCG@10, history skipped no worse than -2%


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="studies/transition_prior.sh's OUT folder")
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args(argv)
    out = Path(args.out)
    valid = {(seed, split): json.loads((out / f"valid_s{seed}_{split}.json").read_text())
             for seed in SEEDS for split in SPLITS}
    gains: dict = {run: {w: [] for w in GRID} for run in RUNS}
    for (seed, split), rows in valid.items():
        for run in RUNS:
            by_weight = {r["prior_weight"]: r for r in rows if r["run"] == run}
            for w in GRID:
                gains[run][w].append({p: by_weight[w][p]["ndcg@10"] / by_weight[0.0][p]["ndcg@10"] - 1 for p in PROTOCOLS})
    decision = {}
    for run in RUNS:
        mean = {w: statistics.mean(g["plain"] for g in gains[run][w]) for w in GRID}
        chosen = max(GRID, key=lambda w: mean[w])
        adopted = all(g["plain"] >= BAR and g["history_skipped"] >= GUARD for g in gains[run][chosen])
        decision[run] = {"mean_plain_gain": mean, "chosen_weight": chosen, "adopted": adopted,
                         "gains_at_chosen": gains[run][chosen]}
        print(f"{run}: mean plain NDCG@10 gain by W " + ", ".join(f"{w:g}: {100 * m:+.1f}%" for w, m in mean.items())
              + f"; W = {chosen:g}: every run >= +{100 * BAR:.0f}% plain and >= {100 * GUARD:.0f}% skipped: "
              + (("yes: adopted" if adopted else "no: not adopted") if run == "recipe" else
                 ("yes" if adopted else "no") + " (beside the rule's recipe runs: decides nothing)"))
    report: dict = {"rule": "studies/results/transition_prior_rule.txt", "valid": {f"s{s}_{sp}": v for (s, sp), v in valid.items()},
                    "decision": decision, "test": {}}
    arms = {"recipe": "recipe", "history_bias": "bias"}
    for run, arm in arms.items():
        weights = (0.0, decision["recipe"]["chosen_weight"])
        for split in SPLITS:
            for w in weights:
                results = [last_json(out / f"test_s{seed}_{split}_{arm}_w{w:g}.log") for seed in SEEDS]
                if any(r is None for r in results):
                    continue
                row = {"seeds": {seed: {p: {m: r[p]["tiger"][m] for m in METRICS} for p in PROTOCOLS}
                                 for seed, r in zip(SEEDS, results)},
                       "checkpoint_steps": [r["checkpoint_step"] for r in results],
                       "eval_seconds": [r["eval_seconds"] for r in results]}
                row["tiger"] = {p: {m: mean_std([r[p]["tiger"][m] for r in results]) for m in METRICS}
                                for p in PROTOCOLS}
                row["transition"] = {p: {m: results[0][p]["transition"][m] for m in METRICS} for p in PROTOCOLS}
                row["popularity"] = {p: {m: results[0][p]["popularity"][m] for m in METRICS} for p in PROTOCOLS}
                report["test"][f"{run}_{split}_w{w:g}"] = row
                cell = lambda p: " / ".join(f"{row['tiger'][p][m]['mean']:.4f} ± {row['tiger'][p][m]['std']:.4f}"
                                            for m in METRICS)
                print(f"| {run} | {split} | {w:g} | {cell('plain')} | {cell('history_skipped')} | "
                      f"{row['transition']['plain']['recall@10']:.4f} / {row['transition']['plain']['ndcg@10']:.4f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
