"""Stage-2 training throughput on this machine, one variant per process (not a test).

    python -m bench.throughput_cpu --tokenizer-dir out/rqvae_cpu [--root ../shared/data/amazon] [--cache-dir cache]
        [--config configs/decoder_amazon_cpu.gin] [--steps 600] [--variants base,bf16,...] [--json FILE]

Each variant runs the real `train_decoder.py CONFIG` in a fresh process (threads and torch.compile
are per-process) for `--steps` steps on Beauty, validating once at the end on 200 users, and
reports the loop's own steps/s (`steps_per_second` of its JSON line: wall time minus validation
and checkpoints, compilation included for the compiled variants) and examples/s. Time it on a quiet
machine: another process on the same cores halves these numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

import torch

from bench.results_file import write_json

VARIANTS = {  # name -> extra gin bindings on top of the config
    "base": [],
    "softmax over all codes": ["train.constrained_softmax=False"],
    "threads=1": ["train.num_threads=1"],
    "no length buckets": ["train.bucket_by_length=False"],
    "dropout 0": ["train.dropout=0.0"],
    "bf16 autocast": ['train.precision="bf16"'],
    "torch.compile": ["train.compile_model=True"],
    "compile + bf16": ["train.compile_model=True", 'train.precision="bf16"'],
    "micro-batches of 64": ["train.micro_batch_size=64"],   # the same step (gradient accumulation)
    "micro-batches of 128": ["train.micro_batch_size=128"],
}


def run_variant(config: str, bindings: list[str], common: list[str], timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as save_dir:
        args = [sys.executable, "train_decoder.py", config, *[a for b in (*common, f'train.save_dir="{save_dir}"', *bindings)
                                                              for a in ("--gin", b)]]
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer-dir", required=True, help="stage 1's save_dir (holds amazon-beauty/semantic_ids.pt)")
    parser.add_argument("--root", default="../shared/data/amazon")
    parser.add_argument("--cache-dir", default="cache")
    parser.add_argument("--config", default="configs/decoder_amazon_cpu.gin")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    common = [f'train.dataset_folder="{args.root}"', f'train.cache_dir="{args.cache_dir}"',
              f'train.tokenizer_dir="{args.tokenizer_dir}"', f"train.iterations={args.steps}",
              f"train.eval_every={args.steps}", "train.valid_max_users=200", "train.resume=False"]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
          f"{args.config}, {args.steps} steps per variant\n")
    print("| variant | steps/s | examples/s | vs base | valid NDCG@10 after the run |")
    print("|---|---:|---:|---:|---:|")
    rows, base = [], None
    for name in args.variants.split(","):
        if name not in VARIANTS:
            raise SystemExit(f"--variants: unknown {name!r}; choose from {', '.join(VARIANTS)}")
        result = run_variant(args.config, VARIANTS[name], common, timeout=3600)
        if "error" in result:
            print(f"| {name} | failed: {result['error']} | | | |", flush=True)
            rows.append({"variant": name, **result})
            continue
        batch = result["batch_size"]
        sps = result["steps_per_second"]
        base = base or sps
        ndcg = result["best_valid"]["ndcg@10"] if result["best_valid"] else float("nan")
        print(f"| {name} | {sps:.2f} | {sps * batch:,.0f} | {sps / base:.2f}x | {ndcg:.4f} |", flush=True)
        rows.append({"variant": name, "bindings": VARIANTS[name], "steps_per_second": sps, "examples_per_second": sps * batch})
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
