"""The first-level cluster picture and collisions per prefix of a stage-1 run written before train_rqvae.py drew them.

    python -m studies.semantic_id_clusters RQVAE_RUN --root ../shared/data/amazon --cache-dir cache \
        [--dataset amazon --split beauty] [--out clusters.png] [--largest 8] [--titles 4] [--json stats.json]

RQVAE_RUN is a stage-1 run folder (<save_dir>/<dataset>-<split>/, holding semantic_ids.pt). The picture and the
numbers are evaluation/semantic_id_clusters.py's, the ones train_rqvae.py now writes itself; this draws them for any
run, with more or fewer clusters and titles.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from data.processed import as_dataset, load_processed
from evaluation.semantic_id_clusters import cluster_picture, stats_table, tokenizer_stats
from modules.tokenizer import SemanticIdTokenizer
from studies.cli import add_data_arguments


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m studies.semantic_id_clusters", description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a stage-1 run folder holding semantic_ids.pt")
    add_data_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("clusters.png"))
    parser.add_argument("--largest", type=int, default=8)
    parser.add_argument("--titles", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    tokenizer = SemanticIdTokenizer.load(args.run / "semantic_ids.pt")
    titles = load_processed(args.root, as_dataset(args.dataset), args.split, args.cache_dir).titles
    if len(titles) != tokenizer.n_items:
        raise SystemExit(f"{args.run} has {tokenizer.n_items:,} items, {args.dataset}/{args.split} {len(titles):,}")
    stats = {"run": str(args.run), **tokenizer_stats(tokenizer)}
    cluster_picture(tokenizer.sem_ids[:, 0], tokenizer.codebook_size, titles, args.out, args.largest, args.titles,
                    f"{args.dataset}/{args.split}")
    print(stats_table(stats))
    print(f"picture: {args.out}; largest collision token {stats['max_collision_token']}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(stats, indent=1) + "\n")
    return stats


if __name__ == "__main__":
    main()
