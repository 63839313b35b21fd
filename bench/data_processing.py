"""Benchmark (not a test): process a data set from its raw files, embedding included.

    python bench/data_processing.py --root ../shared/data/amazon --split beauty

Runs in a fresh temporary cache folder, so nothing is served from a cache; then
loads once more from that cache. Prints a markdown table: wall time per stage and
the process's peak resident memory (getrusage, includes the sentence encoder).
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from data.item_embeddings import cached_item_embeddings  # noqa: E402
from data.item_text import TEXT_TEMPLATE  # noqa: E402
from data.processed import ItemData, RecDataset, SeqData, cache_folder, default_max_seq_len, load_processed  # noqa: E402
from data.splits import gather_histories, leave_one_out  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--dataset", default="amazon")
    parser.add_argument("--split", default="beauty")
    args = parser.parse_args()
    dataset = RecDataset(args.dataset)
    rows = []

    def stage(name, fn):
        start = time.perf_counter()
        out = fn()
        rows.append((name, time.perf_counter() - start, peak_rss_mib()))
        return out

    with tempfile.TemporaryDirectory() as cache:
        total = time.perf_counter()
        raw = stage("parse raw files + write parquet/torch caches",
                    lambda: load_processed(args.root, dataset, args.split, cache))
        stage(f"embed {raw.n_items} item texts ({torch.get_num_threads()} torch threads)",
              lambda: cached_item_embeddings(raw.texts, cache_folder(cache, dataset, args.split), None, TEXT_TEMPLATE))
        L = default_max_seq_len(dataset)

        def splits():
            users = raw.interactions["user"].to_numpy()
            items = torch.from_numpy(raw.interactions["item"].to_numpy().copy())
            out = {}
            for subset, (r, n) in leave_one_out(users, L).items():
                out[subset] = gather_histories(items, torch.from_numpy(r), torch.from_numpy(n), L)
            return out

        hist = stage(f"leave-one-out splits + all histories (max_seq_len={L})", splits)
        from_raw = time.perf_counter() - total
        rows.append(("**total from raw**", from_raw, peak_rss_mib()))

        def cached():
            items = ItemData(args.root, dataset, args.split, cache_dir=cache)
            return items, [SeqData(args.root, dataset, args.split, s, cache_dir=cache) for s in ("train", "valid", "test")]

        items, seqs = stage("second load from the cache (ItemData + 3 SeqData)", cached)

    print(f"{args.dataset}/{args.split}: {raw.n_users} users, {raw.n_items} items, {len(raw.interactions)} interactions, "
          f"train/valid/test {len(hist['train'])}/{len(hist['valid'])}/{len(hist['test'])}, feature_dim {items.feature_dim}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"torch {torch.__version__}, python {platform.python_version()}\n")
    print("| stage | wall time (s) | peak RSS so far (MiB) |\n| --- | ---: | ---: |")
    for name, seconds, rss in rows:
        print(f"| {name} | {seconds:.1f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
