"""How much of "what users buy next" a tokenizer's semantic IDs already group together.

    python -m studies.semantic_id_stats --root ../shared/data/amazon --cache-dir cache \
        TOKENIZER_DIR [TOKENIZER_DIR ...] [--label NAME ...]

TOKENIZER_DIR: a train.save_dir of train_rqvae.py (what train_decoder.py reads as train.tokenizer_dir).
One markdown row per tokenizer: the share of validation transitions (each user's last history item -> the
validation target) whose two items share their first code, their first two codes, and the
tokenizer's own collision numbers. A higher share means the decoder's first, hardest token is
partly given by the last item; random codes share ~1/256. Validation split only.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from data.processed import SeqData
from modules.tokenizer import SemanticIdTokenizer
from runtime.run_folder import existing_tokenizer_path
from studies.cli import add_data_arguments

HEADER = ("| tokenizer | valid transitions sharing code 1 | codes 1-2 | items sharing a 3-code prefix | "
          "largest group |\n|---|---:|---:|---:|---:|")


def shared_prefix_shares(sem_ids, last, target, levels: int) -> list[float]:
    """sem_ids [n_items, L+1]; last, target [M] item ids -> share of pairs equal on codes 1..l, l = 1..levels."""
    same = (sem_ids[last] == sem_ids[target]).cumprod(dim=1)  # [M, L+1]: 1 while every code so far matches
    return [same[:, level].float().mean().item() for level in range(levels)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tokenizer_dirs", nargs="+")
    add_data_arguments(parser)
    parser.add_argument("--label", action="append", help="one per tokenizer, in order (default: its folder name)")
    args = parser.parse_args(argv)
    labels = args.label or [Path(folder).name for folder in args.tokenizer_dirs]
    if len(labels) != len(args.tokenizer_dirs):
        parser.error(f"{len(labels)} --label for {len(args.tokenizer_dirs)} tokenizers")
    valid = SeqData(args.root, args.dataset, args.split, subset="valid", cache_dir=args.cache_dir)
    print(HEADER)
    for folder, label in zip(args.tokenizer_dirs, labels):
        tokenizer = SemanticIdTokenizer.load(existing_tokenizer_path(folder, args.dataset, args.split))
        if tokenizer.n_items != valid.n_items:
            raise SystemExit(f"{folder}: {tokenizer.n_items} items, but {args.dataset}/{args.split} has {valid.n_items}")
        code1, code12 = shared_prefix_shares(tokenizer.sem_ids, valid.last_items, valid.targets, levels=2)
        stats = tokenizer.collision_stats()
        print(f"| {label} | {code1:.2%} | {code12:.2%} | {stats['collision_share']:.2%} | "
              f"{stats['largest_collision_group']} |")


if __name__ == "__main__":
    main()
