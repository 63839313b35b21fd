"""Learning-health curves of stage-2 runs, side by side, in one PNG.

    python -m studies.plot_curves RUN [RUN ...] [--out curves.png] [--x step|examples_seen|wall_seconds] [--label NAME ...]

RUN is a run folder (<save_dir>/<dataset>-<split>) holding curve.jsonl, written by train_decoder.py
at every validation. Panels: training loss; validation NDCG@10 and Recall@10 (dashed: the
popularity and transition baselines of the first run, from its baselines.json); per-level NLL
of the validation targets (dotted: the history-blind prior; the first code's NLL below its prior
is the sign that the model reads the history); coverage@10; the most common top-1's share.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

PANELS = (("train_loss", "training loss"), ("ndcg@10", "valid NDCG@10"), ("recall@10", "valid Recall@10"),
          ("nll_level_0", "valid NLL, first code"), ("coverage@10", "coverage@10"), ("top1_share", "most common top-1's share"))


def read_curve(run: Path) -> list[dict]:
    path = run / "curve.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no curve at {path}: pass a run folder of train_decoder.py (<save_dir>/<dataset>-<split>)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(runs: list[Path], out: Path, x: str = "step", labels: list[str] | None = None) -> Path:
    labels = labels or [run.parent.name for run in runs]  # the save_dir: runs differ there, not in <dataset>-<split>
    if len(labels) != len(runs):
        raise ValueError(f"{len(labels)} --label for {len(runs)} runs")
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for run, label in zip(runs, labels):
        curve = read_curve(run)
        xs = [r[x] for r in curve]
        for ax, (key, _) in zip(axes.flat, PANELS):
            line, = ax.plot(xs, [r.get(key, float("nan")) for r in curve], marker=".", label=label)
            if key == "nll_level_0" and (run / "baselines.json").is_file():
                prior = json.loads((run / "baselines.json").read_text())["prior_nll"][0]
                ax.axhline(prior, color=line.get_color(), linestyle=":", linewidth=1)
    first_baselines = runs[0] / "baselines.json"
    if first_baselines.is_file():
        floors = json.loads(first_baselines.read_text())
        for ax, (key, _) in zip(axes.flat, PANELS):
            for name, style in (("popularity", "--"), ("transition", "-.")):
                if key in floors.get(name, {}):
                    ax.axhline(floors[name][key], color="grey", linestyle=style, linewidth=1, label=name)
    for ax, (_, title) in zip(axes.flat, PANELS):
        ax.set_title(title)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    axes.flat[1].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("curves.png"))
    parser.add_argument("--x", choices=("step", "examples_seen", "wall_seconds"), default="step")
    parser.add_argument("--label", action="append", help="one per run, in order (default: the run's folder name)")
    args = parser.parse_args(argv)
    print(plot_curves(args.runs, args.out, args.x, args.label))


if __name__ == "__main__":
    main()
