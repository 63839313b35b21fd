"""Runs of a recipe over seeds and categories -> one JSON and one markdown report: test metrics under both
ranking protocols (mean and standard deviation over seeds, every seed's row), the floors beside them, stage 1's
codes, wall times, and each run's validation learning curve.

    python -m studies.recipe_seeds --run NAME:SPLIT:SEED:LOG_DIR:TAG [...] --paper SPLIT=R10,N10 [...] \
        --json studies/results/x.json --md studies/results/x.md --title "..." --machine "..."

A run is read from the logs its commands left in LOG_DIR (the last stdout line of each entry point is its
JSON result): `rqvae_TAG.log` (train_rqvae.py, optional), `TAG.log` (train_decoder.py, holding the validation
curve) and `TAG_test.log` (evaluate.py --split test, both protocols). NAME groups runs into one row of the
summary (a recipe); SPLIT is the category.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from pathlib import Path
from typing import Any

from evaluation.protocols import PROTOCOLS

METRICS = ("recall@10", "ndcg@10")


def last_json(path: Path) -> dict | None:
    """The last line of `path` that parses as a JSON object (an entry point's result), or None."""
    if not path.is_file():
        return None
    for line in reversed(path.read_text(errors="replace").replace("\r", "\n").splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def wall_clock(path: Path) -> float | None:
    """Elapsed seconds from /usr/bin/time -v's report at the end of a log, if there is one."""
    if not path.is_file():
        return None
    for line in path.read_text(errors="replace").splitlines():
        if "Elapsed (wall clock) time" in line:
            parts = [float(p) for p in line.rsplit(" ", 1)[1].split(":")]
            return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return None


def read_run(name: str, split: str, seed: int, log_dir: Path, tag: str) -> dict[str, Any]:
    decoder, test = last_json(log_dir / f"{tag}.log"), last_json(log_dir / f"{tag}_test.log")
    if decoder is None or test is None:
        raise SystemExit(f"{log_dir}/{tag}.log or {tag}_test.log holds no result: has the run finished?")
    stage1 = last_json(log_dir / f"rqvae_{tag}.log")
    run = {
        "recipe": name, "split": split, "seed": seed, "logs": str(log_dir / tag),
        "selected_on": decoder["selected_on"], "best_step": decoder["best_step"], "steps": decoder["steps"],
        "train_seconds": decoder["train_seconds"], "steps_per_second": decoder["steps_per_second"],
        "decoder_wall_s": wall_clock(log_dir / f"{tag}.log"),
        "test": {p: {who: {m: test[p][who][m] for m in METRICS} for who in ("tiger", "popularity", "transition")}
                 for p in PROTOCOLS},
        "test_users": test["users"],
        "curve": [{"step": h["step"], "examples_seen": h["examples_seen"], "wall_seconds": h["wall_seconds"],
                   **{p: {m: h[p][m] for m in METRICS} for p in PROTOCOLS}} for h in decoder["valid_history"]],
    }
    if stage1 is not None:
        run["stage1"] = {k: stage1[k] for k in ("eval_reconstruction_loss", "collision_share",
                                                "largest_collision_group", "wall_time_s", "step")}
    return run


def summarise(runs: list[dict]) -> list[dict]:
    """One row per (recipe, split): mean and sample standard deviation over its seeds, per protocol."""
    rows = []
    for key in dict.fromkeys((r["recipe"], r["split"]) for r in runs):
        group = [r for r in runs if (r["recipe"], r["split"]) == key]
        row: dict[str, Any] = {"recipe": key[0], "split": key[1], "seeds": [r["seed"] for r in group]}
        for p in PROTOCOLS:
            for who in ("tiger", "popularity", "transition"):
                for m in METRICS:
                    values = [r["test"][p][who][m] for r in group]
                    row.setdefault(p, {}).setdefault(who, {})[m] = {
                        "mean": statistics.fmean(values),
                        "std": statistics.stdev(values) if len(values) > 1 else None}
        row["decoder_train_seconds_mean"] = statistics.fmean(r["train_seconds"] for r in group)
        rows.append(row)
    return rows


def fmt(stat: dict) -> str:
    return f"{stat['mean']:.4f}" + (f" ± {stat['std']:.4f}" if stat["std"] is not None else "")


def markdown(report: dict) -> str:
    out = [f"# {report['title']}", "", f"Machine: {report['machine']}. Commit: `{report['commit']}`. "
           "Test = every user of the split, once per run; mean ± sample standard deviation over seeds.", ""]
    out += ["## Test, both protocols (plain = the paper's)", "",
            "| recipe | split | seeds | plain Recall@10 | plain NDCG@10 | skipped Recall@10 | skipped NDCG@10 | decoder train s (mean) |",
            "|---|---|---|---:|---:|---:|---:|---:|"]
    for row in report["summary"]:
        cells = [fmt(row[p]["tiger"][m]) for p in PROTOCOLS for m in METRICS]
        out.append(f"| {row['recipe']} | {row['split']} | {', '.join(map(str, row['seeds']))} | " + " | ".join(cells)
                   + f" | {row['decoder_train_seconds_mean']:,.0f} |")
    for split in dict.fromkeys(r["split"] for r in report["summary"]):
        row = next(r for r in report["summary"] if r["split"] == split)
        for who in ("popularity", "transition"):
            cells = [fmt(row[p][who][m]) for p in PROTOCOLS for m in METRICS]
            out.append(f"| {who} floor | {split} | | " + " | ".join(cells) + " | |")
        if split in report["paper"]:
            r10, n10 = report["paper"][split]
            out.append(f"| the paper (TIGER, Table 1) | {split} | | {r10:.4f} | {n10:.4f} | | | |")
    out += ["", "## Every run", "",
            "| recipe | split | seed | best step (selected on) | plain R@10 | plain N@10 | skipped R@10 | skipped N@10 | stage 1 collisions | stage 1 s | decoder train s | steps/s |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["runs"]:
        s1 = r.get("stage1")
        out.append(f"| {r['recipe']} | {r['split']} | {r['seed']} | {r['best_step']:,} ({r['selected_on']}) | "
                   + " | ".join(f"{r['test'][p]['tiger'][m]:.4f}" for p in PROTOCOLS for m in METRICS)
                   + (f" | {s1['collision_share']:.2%} | {s1['wall_time_s']:,.0f}" if s1 else " | - | -")
                   + f" | {r['train_seconds']:,.0f} | {r['steps_per_second']:.2f} |")
    out += ["", "## Validation curves (the config's fixed validation users)", ""]
    for r in report["runs"]:
        out += [f"{r['recipe']}, {r['split']}, seed {r['seed']}:", "",
                "| step | targets seen | wall s | plain R@10 | plain N@10 | skipped R@10 | skipped N@10 |",
                "|---:|---:|---:|---:|---:|---:|---:|"]
        for h in r["curve"]:
            out.append(f"| {h['step']:,} | {h['examples_seen']:,} | {h['wall_seconds']:,.0f} | "
                       + " | ".join(f"{h[p][m]:.4f}" for p in PROTOCOLS for m in METRICS) + " |")
        out.append("")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m studies.recipe_seeds", description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME:SPLIT:SEED:LOG_DIR:TAG")
    parser.add_argument("--paper", action="append", default=[], metavar="SPLIT=R10,N10")
    parser.add_argument("--title", required=True)
    parser.add_argument("--machine", required=True)
    parser.add_argument("--commands", default="", help="the commands behind the runs, recorded in the JSON")
    parser.add_argument("--json", required=True)
    parser.add_argument("--md", required=True)
    args = parser.parse_args(argv)
    runs = []
    for spec in args.run:
        name, split, seed, log_dir, tag = spec.split(":")
        runs.append(read_run(name, split, int(seed), Path(log_dir), tag))
    paper = {s: tuple(float(x) for x in v.split(",")) for s, v in (p.split("=") for p in args.paper)}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    report = {"title": args.title, "machine": args.machine, "commit": commit, "commands": args.commands,
              "paper": paper, "summary": summarise(runs), "runs": runs}
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    Path(args.md).write_text(markdown(report))
    return report


if __name__ == "__main__":
    main()
