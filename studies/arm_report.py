"""One arm of a laptop-recipe study against its control runs, seed by seed, and the decision its rule states.

    python -m studies.arm_report --arm successor --rule studies/results/successor_token_rule.txt \
        --seed 42:out/successor_token/s42/successor:out/history_bias_seeds/s42/recipe [--seed 43:...] \
        [--test 42:out/successor_token/s42/test_successor_{split}.log:out/history_bias_seeds/s42/test_{split}_recipe.log] \
        [--within 16000] [--json studies/results/x.json]

Each --seed names the arm's and the control's save_dir (runs in <save_dir>/amazon-<split>/, studies/recipe_arm.sh).
The measure, as every rule of issue 35 states it: the best validation NDCG@10 within --within steps, plain (the
paper's protocol) and history skipped, arm against control. The decision, mechanically: with one seed, continue
(run the other seeds) if the plain change is >= --plain-bar on every category and the skipped change >=
--skipped-guard; with three or more, adopt if on every category the seed mean of the plain change is >=
--plain-bar, the arm is ahead on plain in at least two thirds of the seeds, and the seed mean of the skipped change
is >= --skipped-guard. --test adds each seed's test numbers (evaluate.py's logs; {split} is filled in), read only
for the table: they decide nothing. Prints the markdown tables; --json writes everything, curves included.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from pathlib import Path

from evaluation.protocols import PROTOCOLS
from studies.plot_curves import read_curve
from studies.recipe_seeds import last_json

SPLITS = ("beauty", "sports")


def best_within(curve: list[dict], protocol: str, within: int) -> dict:
    """The first best validation NDCG@10 of `protocol` at a step <= within -> {step, ndcg@10, recall@10}."""
    rows = [r for r in curve if r["step"] <= within]
    if not rows:
        raise SystemExit(f"no validation within {within} steps")
    best = max(rows, key=lambda r: r[protocol]["ndcg@10"])
    return {"step": best["step"], **{m: best[protocol][m] for m in ("ndcg@10", "recall@10")}}


def change(arm: float, control: float) -> float:
    return arm / control - 1


def decide(comparisons: list[dict], plain_bar: float, skipped_guard: float) -> dict:
    """comparisons: one per (seed, split) with plain_change and history_skipped_change -> the rule's verdict."""
    seeds = sorted({c["seed"] for c in comparisons})
    per_split = {}
    for split in sorted({c["split"] for c in comparisons}):
        rows = [c for c in comparisons if c["split"] == split]
        per_split[split] = {"seeds": [c["seed"] for c in rows],
                            "plain_mean_change": statistics.mean(c["plain_change"] for c in rows),
                            "history_skipped_mean_change": statistics.mean(c["history_skipped_change"] for c in rows),
                            "plain_ahead": sum(c["plain_change"] > 0 for c in rows)}
    complete = all(len(v["seeds"]) == len(seeds) for v in per_split.values()) and set(per_split) == set(SPLITS)
    passes = complete and all(v["plain_mean_change"] >= plain_bar and v["history_skipped_mean_change"] >= skipped_guard
                              and (len(seeds) == 1 or v["plain_ahead"] * 3 >= 2 * len(seeds)) for v in per_split.values())
    if not complete or len(seeds) == 2:
        verdict = "pending"
    elif len(seeds) == 1:
        verdict = "continue: run the other seeds" if passes else "stop: not adopted"
    else:
        verdict = "adopt" if passes else "not adopted"
    return {"seeds": seeds, "per_split": per_split, "plain_bar": plain_bar, "skipped_guard": skipped_guard,
            "verdict": verdict}


def test_row(path: Path) -> dict:
    result = last_json(path)
    if result is None or "plain" not in result:
        raise SystemExit(f"{path}: no evaluate.py result (has the test run finished?)")
    return {"log": str(path), "checkpoint_step": result["checkpoint_step"], "beam_width": result["beam_width"],
            **{p: {model: {m: result[p][model][m] for m in ("recall@10", "ndcg@10")}
                   for model in ("tiger", "popularity", "transition")} for p in PROTOCOLS}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", required=True, help="the arm's name")
    parser.add_argument("--rule", required=True, type=Path, help="the rule file, written before any run of the arm")
    parser.add_argument("--seed", action="append", required=True, metavar="SEED:ARM_SAVE_DIR:CONTROL_SAVE_DIR")
    parser.add_argument("--test", action="append", default=[], metavar="SEED:ARM_LOG:CONTROL_LOG",
                        help="evaluate.py --split test logs; {split} in a path is the category")
    parser.add_argument("--within", type=int, default=16000, help="best validation within this many steps")
    parser.add_argument("--plain-bar", type=float, default=0.03)
    parser.add_argument("--skipped-guard", type=float, default=-0.01)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not args.rule.is_file():
        parser.error(f"--rule {args.rule}: no such file")
    seeds = [s.split(":") for s in args.seed]
    tests = {int(t.split(":")[0]): t.split(":")[1:] for t in args.test}
    if any(len(s) != 3 for s in seeds) or any(len(t) != 2 for t in tests.values()):
        parser.error("--seed takes SEED:ARM_SAVE_DIR:CONTROL_SAVE_DIR, --test SEED:ARM_LOG:CONTROL_LOG")

    runs, comparisons = [], []
    for seed, arm_dir, control_dir in seeds:
        for split in SPLITS:
            best = {}
            for role, folder in (("arm", arm_dir), ("control", control_dir)):
                run = Path(folder) / f"amazon-{split}"
                curve = read_curve(run)
                best[role] = {p: best_within(curve, p, args.within) for p in PROTOCOLS}
                runs.append({"seed": int(seed), "split": split, "role": role, "run": str(run),
                             "steps": curve[-1]["step"], **{f"best_{p}": best[role][p] for p in PROTOCOLS},
                             "curve": [{k: r[k] for k in ("step", "train_loss", "wall_seconds", "nll_level_0") if k in r}
                                       | {p: {m: r[p][m] for m in ("recall@10", "ndcg@10")} for p in PROTOCOLS}
                                       for r in curve]})
            comparison = {"seed": int(seed), "split": split,
                          **{f"{p}_change": change(best["arm"][p]["ndcg@10"], best["control"][p]["ndcg@10"])
                             for p in PROTOCOLS}}
            if int(seed) in tests:
                comparison["test"] = {role: test_row(Path(log.format(split=split)))
                                      for role, log in zip(("arm", "control"), tests[int(seed)])}
            comparisons.append(comparison)
    decision = decide(comparisons, args.plain_bar, args.skipped_guard)

    print(f"| validation, best NDCG@10 within {args.within:,} | " +
          " | ".join(f"seed {s}: control / {args.arm}" for s, _, _ in seeds) + " | seed mean change |")
    print("|---|" + "---:|" * (len(seeds) + 1))
    for split in SPLITS:
        for p in PROTOCOLS:
            cells = []
            for seed, _, _ in seeds:
                c = next(c for c in comparisons if c["seed"] == int(seed) and c["split"] == split)
                value = {r["role"]: r[f"best_{p}"] for r in runs if r["seed"] == int(seed) and r["split"] == split}
                cells.append(f"{value['control']['ndcg@10']:.4f} / {value['arm']['ndcg@10']:.4f} ({c[f'{p}_change']:+.1%})")
            mean = decision["per_split"][split][f"{p}_mean_change"]
            print(f"| {split.capitalize()} {p.replace('_', ' ')} | " + " | ".join(cells) + f" | {mean:+.1%} |")
    print(f"\nDecision ({len(decision['seeds'])} seed(s); bar {args.plain_bar:+.0%} plain, guard {args.skipped_guard:+.0%} "
          f"skipped): **{decision['verdict']}**")
    if tests:
        print("\n| test (every user) | protocol | control Recall@10 / NDCG@10 | arm | transition floor |\n|---|---|---:|---:|---:|")
        for c in comparisons:
            if "test" in c:
                for p in PROTOCOLS:
                    t = {role: c["test"][role][p] for role in ("arm", "control")}
                    print(f"| {c['split'].capitalize()} seed {c['seed']} | {p.replace('_', ' ')} | "
                          f"{t['control']['tiger']['recall@10']:.4f} / {t['control']['tiger']['ndcg@10']:.4f} | "
                          f"{t['arm']['tiger']['recall@10']:.4f} / {t['arm']['tiger']['ndcg@10']:.4f} | "
                          f"{t['arm']['transition']['recall@10']:.4f} / {t['arm']['transition']['ndcg@10']:.4f} |")
    report = {"arm": args.arm, "rule": args.rule.read_text(), "rule_file": str(args.rule), "within": args.within,
              "code": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                     cwd=Path(__file__).resolve().parents[1]).stdout.strip(),
              "comparisons": comparisons, "decision": decision, "runs": runs}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
