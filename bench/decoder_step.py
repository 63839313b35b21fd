"""Seconds, memory and FLOP rate of one stage-2 training step of a decoder config (not a test).

    python -m bench.decoder_step configs/decoder_ml32m.gin [--device cuda] [--steps 10]
        [--micro-batch 32,none] [--gin BINDING ...] [--json FILE]

The model, batch, micro-batches, optimiser and precision are the config's (`--gin` overrides, as
train_decoder.py takes them); the examples are synthetic: random items of a random catalogue, every history at the
config's max_seq_len (MovieLens: 200 items, an 801-token encoder input; the worst case, 159 on
average in ML-32M), so no data set or tokenizer is needed and any machine can time the real step. With
`train.all_positions` a batch holds windows (data/windows.py) of 2 x max_seq_len items whose last
max_seq_len are targets: a full later window, the fewest targets a full window trains (a user's first
window trains all but its first item); examples/s then counts those targets.
Each step is train_decoder.train_step, the one training takes: per micro-batch forward (autocast),
size-weighted loss (over the valid codes only with constrained_softmax) and backward, then gradient
clipping and the optimiser. Reported per micro-batch size: seconds per
step after warm-up (the device synchronised), examples/s, FLOPs per step counted by
torch.utils.flop_counter and the rate they run at, and peak memory (CUDA: max_memory_allocated;
CPU: the process's peak RSS, which includes everything loaded before), and what the rate means: the config's
run (its `train.iterations` steps) and one pass over `--pass-targets` training targets (default MovieLens-32M's
31.4M; with all positions a worst-case rate, real windows are shorter), both in hours. Lets a GPU session
measure what bench/movielens_32m.py can only extrapolate on the CPU.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import gin
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.results_file import write_json
import runtime.precision
import train_decoder
from runtime.gin_cli import load_gin_config
from modules.semantic_id_trie import SemanticIdTrie
from runtime.optimizer import build_optimizer

N_LEVELS, CODEBOOK_SIZE = 4, 256  # 3 RQ-VAE codes + the collision token, as stage 1 writes them
N_ITEMS = 12_101                  # a catalogue of Beauty's size (random IDs)
ML32M_TARGETS = 31_400_000       # MovieLens-32M's training targets (README: `python -m data --dataset ml-32m`)


def synthetic_batch(catalogue: torch.Tensor, batch_size: int, max_seq_len: int, n_user_buckets: int,
                    device: torch.device, generator: torch.Generator, all_positions: bool = False) -> dict[str, torch.Tensor]:
    """catalogue [n_items, T] -> user_ids [B], history [B, L, T] (every position filled), target [B, T]: random items.
    all_positions: history [B, 2L, T] windows, target [B, 2L, T] their items from position L on, -1 before."""
    items = lambda *shape: catalogue[torch.randint(0, len(catalogue), shape, generator=generator)]
    users = torch.randint(0, 10 * n_user_buckets, (batch_size,), generator=generator)
    if all_positions:
        window = items(batch_size, 2 * max_seq_len)
        target = window.clone()
        target[:, :max_seq_len] = -1
        batch = {"user_ids": users, "history": window, "target": target}
    else:
        batch = {"user_ids": users, "history": items(batch_size, max_seq_len), "target": items(batch_size)}
    return {k: v.to(device) for k, v in batch.items()}


def time_step(bindings: dict, micro_batch_size: int | None, device: torch.device, steps: int, warmup: int = 2,
              pass_targets: int = ML32M_TARGETS) -> dict:
    torch.manual_seed(bindings["seed"])
    generator = torch.Generator().manual_seed(0)
    catalogue = torch.randint(0, CODEBOOK_SIZE, (N_ITEMS, N_LEVELS), generator=generator).unique(dim=0)  # [~N_ITEMS, T]
    max_seq_len = bindings["max_seq_len"] or 200
    model = train_decoder.build_model(catalogue, CODEBOOK_SIZE, max_seq_len, bindings).to(device)
    opt = build_optimizer(model, bindings["optimizer"], bindings["learning_rate"], bindings["weight_decay"])
    autocast = runtime.precision.autocast(device, bindings["precision"])
    all_positions = bindings.get("all_positions", False)
    batch = synthetic_batch(catalogue, bindings["batch_size"], max_seq_len, bindings["n_user_buckets"], device, generator,
                            all_positions)
    examples = bindings["batch_size"] * (max_seq_len if all_positions else 1)  # targets a step trains
    trie = SemanticIdTrie(catalogue.to(device), CODEBOOK_SIZE) if bindings["constrained_softmax"] else None

    def step() -> None:  # train_decoder.py's step, the same function
        train_decoder.train_step(model, model, batch, opt, autocast, trie=trie, micro_batch_size=micro_batch_size,
                                 grad_clip=bindings["grad_clip"])

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = (time.perf_counter() - start) / steps
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    return {"batch_size": bindings["batch_size"], "micro_batch_size": micro_batch_size, "history": max_seq_len,
            "all_positions": all_positions, "examples_per_step": examples,
            "seconds_per_step": seconds, "examples_per_second": examples / seconds,
            "flops_per_step": flops, "tflops_per_second": flops / seconds / 1e12, "peak_memory_gib": peak / 2**30,
            "iterations": bindings["iterations"], "run_hours": seconds * bindings["iterations"] / 3600,
            "pass_targets": pass_targets, "pass_hours": pass_targets / (examples / seconds) / 3600}


def markdown(config: str, device: str, rows: list[dict]) -> str:
    what = ("synthetic all-positions windows of 2 x history items, the last `history` of them targets (examples = targets)"
            if any(r.get("all_positions") for r in rows) else "synthetic full-length histories")
    timed = [r for r in rows if "error" not in r]
    run = f"{timed[0]['iterations']:,} steps" if timed else "the run"
    passed = f"one pass ({timed[0]['pass_targets']:,} targets)" if timed else "one pass"
    lines = [f"{config} on {device}, {what}:", "",
             f"| batch | micro-batch | history | s / step | examples / s | TFLOP / step | TFLOP/s | peak memory (GiB) | {run} | {passed} |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['batch_size']} | {r['micro_batch_size']} | | {r['error']} | | | | | | |")
            continue
        lines.append(f"| {r['batch_size']} | {r['micro_batch_size'] or 'whole'} | {r['history']} | {r['seconds_per_step']:.3f} | "
                     f"{r['examples_per_second']:,.0f} | {r['flops_per_step'] / 1e12:.3g} | {r['tflops_per_second']:.3g} | "
                     f"{r['peak_memory_gib']:.1f} | {r['run_hours']:.1f} h | {r['pass_hours']:.2f} h |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m bench.decoder_step", description=__doc__.split("\n")[0])
    parser.add_argument("config", help="a stage-2 gin file, e.g. configs/decoder_ml32m.gin")
    parser.add_argument("--gin", action="append", default=[], help="a binding on top of the config")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--micro-batch", default="config",
                        help="comma-separated micro-batch sizes to time ('none': the whole batch; default: the config's)")
    parser.add_argument("--pass-targets", type=int, default=ML32M_TARGETS,
                        help="training targets in one pass, for the hours column (default: MovieLens-32M's)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    gin.clear_config()
    load_gin_config(train_decoder.train, args.config, args.gin)
    bindings = gin.get_bindings(train_decoder.train)
    gin.clear_config()
    sizes = [bindings["micro_batch_size"] if s == "config" else None if s.lower() == "none" else int(s)
             for s in args.micro_batch.split(",")]
    device = torch.device(args.device)
    rows = []
    for size in sizes:
        try:
            rows.append(time_step(bindings, size, device, args.steps, pass_targets=args.pass_targets))
        except torch.OutOfMemoryError as e:  # the point of a micro-batch: report it, time the next size
            rows.append({"batch_size": bindings["batch_size"], "micro_batch_size": size, "error": f"out of memory ({e})"[:80]})
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(markdown(args.config, str(device), rows))
    write_json(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
