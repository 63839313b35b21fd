"""Do the semantic IDs mean something? A tokenizer's first-level clusters in one picture, and collisions per prefix.

train_rqvae.py writes both beside semantic_ids.pt when it writes the IDs: semantic_id_clusters.png (left, the size
of every first-level cluster, items whose first code is c, largest first, against what a uniform split would give;
right, a few titles from each of the largest clusters, so a person sees at a glance whether a cluster gathers
similar products) and semantic_id_clusters.json (per prefix length 1..L: prefixes used, the largest group, the share
of items that share their prefix with another item; the largest collision token). For a run written before that:
`python -m studies.semantic_id_clusters RUN ...`.
"""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Sequence

import torch

from modules.tokenizer import SemanticIdTokenizer
from runtime.atomic_io import atomic_write, atomic_write_text

PICTURE = "semantic_id_clusters.png"
STATS = "semantic_id_clusters.json"


def prefix_stats(codes: torch.Tensor) -> list[dict]:
    """codes [n_items, L] (without the collision token) -> per prefix length l = 1..L: prefixes used, the
    largest group, and the share of items whose l-code prefix another item shares."""
    rows = []
    for length in range(1, codes.shape[1] + 1):
        _, group, counts = torch.unique(codes[:, :length], dim=0, return_inverse=True, return_counts=True)
        rows.append({"prefix_codes": length, "prefixes_used": len(counts), "largest_group": int(counts.max()),
                     "items_sharing_prefix": float((counts[group] > 1).float().mean())})
    return rows


def tokenizer_stats(tokenizer: SemanticIdTokenizer) -> dict:
    """The numbers of semantic_id_clusters.json for one tokenizer."""
    return {"items": tokenizer.n_items, "codebook_size": tokenizer.codebook_size,
            "prefixes": prefix_stats(tokenizer.sem_ids[:, :-1]), "max_collision_token": int(tokenizer.sem_ids[:, -1].max())}


def stats_table(stats: dict) -> str:
    """tokenizer_stats(...) as a markdown table, one row per prefix length."""
    lines = ["| prefix codes | prefixes used | largest group | items sharing their prefix |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['prefix_codes']} | {r['prefixes_used']:,} | {r['largest_group']:,} | {r['items_sharing_prefix']:.1%} |"
              for r in stats["prefixes"]]
    return "\n".join(lines)


def cluster_picture(first: torch.Tensor, codebook_size: int, titles: Sequence[str], out: str | os.PathLike,
                    largest: int = 8, per_cluster: int = 4, name: str = "") -> None:
    """first [n_items]: every item's first code -> a PNG at `out` (written whole or not at all)."""
    import matplotlib
    matplotlib.use("Agg")  # no display: a file is all we draw
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
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def write_cluster_report(tokenizer: SemanticIdTokenizer, titles: Sequence[str], folder: str | os.PathLike,
                         name: str) -> dict:
    """Write semantic_id_clusters.png and .json into `folder`; return the stats (and the two paths)."""
    if len(titles) != tokenizer.n_items:
        raise ValueError(f"{len(titles)} titles for {tokenizer.n_items} semantic IDs")
    folder = Path(folder)
    stats = tokenizer_stats(tokenizer)
    cluster_picture(tokenizer.sem_ids[:, 0], tokenizer.codebook_size, titles, folder / PICTURE, name=name)
    atomic_write_text(json.dumps(stats, indent=1) + "\n", folder / STATS)
    return {**stats, "picture": str(folder / PICTURE), "json": str(folder / STATS)}
