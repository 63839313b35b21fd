"""Do the semantic IDs mean something? The first-level clusters of a tokenizer, in one picture and a table.

    python -m studies.semantic_id_clusters RQVAE_RUN --root ../shared/data/amazon --cache-dir cache \
        [--dataset amazon --split beauty] [--out clusters.png] [--largest 8] [--titles 4] [--json stats.json]

RQVAE_RUN is a stage-1 run folder (<save_dir>/<dataset>-<split>/, holding semantic_ids.pt). The picture:
left, the size of every first-level cluster (items whose first code is c), largest first, against the size
a uniform split would give; right, a few titles from each of the largest clusters, so a person sees at a
glance whether a cluster gathers similar products. Printed (and with --json written): per prefix length
1..L, how many prefixes are used, the largest group, and the share of items that share their prefix with
another item; the collision tokens' largest value (the most items on one full code).
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

import torch

from data.processed import as_dataset, load_processed
from modules.tokenizer import SemanticIdTokenizer


def prefix_stats(codes: torch.Tensor) -> list[dict]:
    """codes [n_items, L] (without the collision token) -> per prefix length l = 1..L: prefixes used, the
    largest group, and the share of items whose l-code prefix another item shares."""
    rows = []
    for length in range(1, codes.shape[1] + 1):
        _, group, counts = torch.unique(codes[:, :length], dim=0, return_inverse=True, return_counts=True)
        rows.append({"prefix_codes": length, "prefixes_used": len(counts), "largest_group": int(counts.max()),
                     "items_sharing_prefix": float((counts[group] > 1).float().mean())})
    return rows


def cluster_picture(first: torch.Tensor, codebook_size: int, titles: list[str], out: Path, largest: int,
                    per_cluster: int, name: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = torch.bincount(first, minlength=codebook_size)
    order = torch.argsort(sizes, descending=True, stable=True)
    fig, (bars, text) = plt.subplots(1, 2, figsize=(15, 6.5), gridspec_kw={"width_ratios": [1, 1.35]})
    bars.bar(range(codebook_size), sizes[order].tolist(), width=1.0, color="tab:blue")
    bars.axhline(len(first) / codebook_size, color="tab:red", lw=1, ls="--", label="uniform split")
    bars.set(xlabel="first-level cluster, largest first", ylabel="items", xlim=(-1, codebook_size),
             title=f"{name}: {len(first):,} items in {int((sizes > 0).sum())} of {codebook_size} first codes")
    bars.legend()
    text.axis("off")
    lines = []
    for c in order[:largest].tolist():
        members = torch.nonzero(first == c).flatten().tolist()
        shown = [t for t in (titles[i] for i in members) if t][:per_cluster]
        lines.append(f"code {c} ({len(members)} items)")
        lines += [textwrap.shorten(f"  - {t}", 70) for t in shown] or ["  (no titles)"]
    text.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=8.5, transform=text.transAxes)
    text.set_title(f"a few titles from the {largest} largest clusters", loc="left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m studies.semantic_id_clusters", description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a stage-1 run folder holding semantic_ids.pt")
    parser.add_argument("--root", required=True, help="the data set folder (train.dataset_folder)")
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--dataset", default="amazon")
    parser.add_argument("--split", default="beauty")
    parser.add_argument("--out", type=Path, default=Path("clusters.png"))
    parser.add_argument("--largest", type=int, default=8)
    parser.add_argument("--titles", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    tokenizer = SemanticIdTokenizer.load(args.run / "semantic_ids.pt")
    titles = load_processed(args.root, as_dataset(args.dataset), args.split, args.cache_dir).titles
    if len(titles) != tokenizer.n_items:
        raise SystemExit(f"{args.run} has {tokenizer.n_items:,} items, {args.dataset}/{args.split} {len(titles):,}")
    codes = tokenizer.sem_ids[:, :-1]  # [n_items, L] without the collision token
    stats = {"run": str(args.run), "items": tokenizer.n_items, "codebook_size": tokenizer.codebook_size,
             "prefixes": prefix_stats(codes), "max_collision_token": int(tokenizer.sem_ids[:, -1].max())}
    cluster_picture(codes[:, 0], tokenizer.codebook_size, titles, args.out, args.largest, args.titles,
                    f"{args.dataset}/{args.split}")
    print("| prefix codes | prefixes used | largest group | items sharing their prefix |\n|---:|---:|---:|---:|")
    for r in stats["prefixes"]:
        print(f"| {r['prefix_codes']} | {r['prefixes_used']:,} | {r['largest_group']:,} | {r['items_sharing_prefix']:.1%} |")
    print(f"picture: {args.out}; largest collision token {stats['max_collision_token']}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(stats, indent=1) + "\n")
    return stats


if __name__ == "__main__":
    main()
