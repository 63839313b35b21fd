"""Seconds, memory and FLOP rate of one stage-2 training step of a decoder config (not a test).

    python -m bench.decoder_step configs/decoder_ml32m.gin [--device cuda] [--steps 10]
        [--micro-batch 32,none] [--gin BINDING ...] [--json FILE]
    python -m bench.decoder_step configs/decoder_amazon_cpu.gin --data ../shared/data/amazon --cache-dir cache \
        --steps 100 [--gin 'train.split="sports"']

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

`--data FOLDER`: real batches instead, the config's data set and split under FOLDER (its train.dataset_folder),
built by the run's own data/training_stream.TrainingStream: length buckets, windows and trimming as training
meets them, `--steps` consecutive batches of its first epoch (buckets in random order), each step timed with its
batch gathering as the training loop does it; the codes are random (the cost does not depend on which), so no
tokenizer is needed. Targets per step are then the batches' own (a mean), FLOPs are counted on the same batches,
and one pass is the split's training targets (unless `--pass-targets`).
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
from data.processed import SeqData
from data.training_stream import TrainingStream
from runtime.distributed import DistEnv
from runtime.gin_cli import load_gin_config
from modules.semantic_id_trie import SemanticIdTrie
from modules.tokenizer import SemanticIdTokenizer
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


def real_stream(bindings: dict, data: SeqData, device: torch.device) -> tuple[torch.Tensor, TrainingStream]:
    """--data: the split's items with random semantic IDs [n_items, T] and the run's batch stream over its
    training split (one process; resident on a GPU where the config keeps the data there)."""
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, CODEBOOK_SIZE, (data.n_items, N_LEVELS - 1), generator=generator)
    sem_ids = SemanticIdTokenizer.from_codes(codes, CODEBOOK_SIZE).sem_ids
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=device)
    stream = TrainingStream(data, sem_ids, bindings["batch_size"], bindings["seed"],
                            all_positions=bindings.get("all_positions", False),
                            bucket_by_length=bindings["bucket_by_length"],
                            resident=bindings["resident_data"] and device.type == "cuda", device=device, env=env)
    return sem_ids, stream


def time_step(bindings: dict, micro_batch_size: int | None, device: torch.device, steps: int, warmup: int = 2,
              pass_targets: int | None = None, data: SeqData | None = None) -> dict:
    """One row: the config's step on synthetic batches, or with `data` on the split's real batches."""
    torch.manual_seed(bindings["seed"])
    generator = torch.Generator().manual_seed(0)
    all_positions = bindings.get("all_positions", False)
    if data is None:
        catalogue = torch.randint(0, CODEBOOK_SIZE, (N_ITEMS, N_LEVELS), generator=generator).unique(dim=0)  # [~N_ITEMS, T]
        max_seq_len = bindings["max_seq_len"] or 200
        batch = synthetic_batch(catalogue, bindings["batch_size"], max_seq_len, bindings["n_user_buckets"], device,
                                generator, all_positions)
        batch_at = lambda i: batch  # the same batch every step
        pass_targets = pass_targets or ML32M_TARGETS
    else:
        catalogue, stream = real_stream(bindings, data, device)
        max_seq_len = data.max_seq_len
        batch_at = lambda i: stream.batch(i)[0]  # the run's batch of step i (gathered, trimmed)
        pass_targets = pass_targets or len(data)  # the split's training targets
    model = train_decoder.build_model(catalogue, CODEBOOK_SIZE, max_seq_len, bindings).to(device)
    opt = build_optimizer(model, bindings["optimizer"], bindings["learning_rate"], bindings["weight_decay"])
    autocast = runtime.precision.autocast(device, bindings["precision"])
    trie = SemanticIdTrie(catalogue.to(device), CODEBOOK_SIZE) if bindings["constrained_softmax"] else None
    targets = torch.zeros((), dtype=torch.long, device=device)  # trained targets, summed on the device (no sync)

    def step(i: int) -> None:  # train_decoder.py's step, the same function
        nonlocal targets
        batch = batch_at(i)
        train_decoder.train_step(model, model, batch, opt, autocast, trie=trie, micro_batch_size=micro_batch_size,
                                 grad_clip=bindings["grad_clip"])
        targets = targets + (batch["target"][..., 0] >= 0).sum()  # per example: B; windows: their trained positions

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(warmup):
        step(i)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    targets.zero_()
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    sync()
    seconds = (time.perf_counter() - start) / steps
    examples = int(targets) / steps  # targets a step trains (a mean over real batches)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    counted = range(warmup, warmup + steps) if data is not None else range(1)  # real batches differ: count them all
    with FlopCounterMode(display=False) as counter:
        for i in counted:
            step(i)
    flops = counter.get_total_flops() / len(counted)
    return {"batch_size": bindings["batch_size"], "micro_batch_size": micro_batch_size, "history": max_seq_len,
            "all_positions": all_positions, "examples_per_step": examples,
            "seconds_per_step": seconds, "examples_per_second": examples / seconds,
            "flops_per_step": flops, "tflops_per_second": flops / seconds / 1e12, "peak_memory_gib": peak / 2**30,
            "iterations": bindings["iterations"], "run_hours": seconds * bindings["iterations"] / 3600,
            "pass_targets": pass_targets, "pass_hours": pass_targets / (examples / seconds) / 3600}


def markdown(config: str, device: str, rows: list[dict], data: str = "synthetic") -> str:
    windows = any(r.get("all_positions") for r in rows)
    if data != "synthetic":
        what = (f"{data}'s training batches as the run builds them, "
                + ("all-positions windows (examples = their targets, a mean)" if windows else "examples (a mean)"))
    elif windows:
        what = "synthetic all-positions windows of 2 x history items, the last `history` of them targets (examples = targets)"
    else:
        what = "synthetic full-length histories"
    timed = [r for r in rows if "error" not in r]
    run = f"{timed[0]['iterations']:,} steps" if timed else "the run"
    passed = f"one pass ({timed[0]['pass_targets']:,} targets)" if timed else "one pass"
    lines = [f"{config} on {device}, {what}:", "",
             f"| batch | micro-batch | history | s / step | examples / step | examples / s | TFLOP / step | TFLOP/s | "
             f"peak memory (GiB) | {run} | {passed} |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['batch_size']} | {r['micro_batch_size']} | | {r['error']} | | | | | | | |")
            continue
        lines.append(f"| {r['batch_size']} | {r['micro_batch_size'] or 'whole'} | {r['history']} | {r['seconds_per_step']:.3f} | "
                     f"{r['examples_per_step']:,.0f} | {r['examples_per_second']:,.0f} | "
                     f"{r['flops_per_step'] / 1e12:.3g} | {r['tflops_per_second']:.3g} | "
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
    parser.add_argument("--pass-targets", type=int, default=None,
                        help="training targets in one pass, for the hours column (default: MovieLens-32M's; "
                             "with --data the split's)")
    parser.add_argument("--data", help="time real batches of the config's data set and split under this folder "
                                       "(its train.dataset_folder) instead of synthetic ones")
    parser.add_argument("--cache-dir", default=None, help="with --data: its train.cache_dir (default: the config's)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    gin.clear_config()
    load_gin_config(train_decoder.train, args.config, args.gin)
    bindings = gin.get_bindings(train_decoder.train)
    gin.clear_config()
    sizes = [bindings["micro_batch_size"] if s == "config" else None if s.lower() == "none" else int(s)
             for s in args.micro_batch.split(",")]
    device = torch.device(args.device)
    if bindings.get("num_threads") is not None:  # as train_decoder.train() sets them (the CPU configs: 2)
        torch.set_num_threads(bindings["num_threads"])
    data, label = None, "synthetic"
    if args.data:
        data = SeqData(args.data, bindings["dataset"], bindings["split"], "train", bindings["max_seq_len"],
                       args.cache_dir or bindings["cache_dir"])
        label = f"{bindings['dataset']}/{bindings['split']}"
    rows = []
    for size in sizes:
        try:
            rows.append({**time_step(bindings, size, device, args.steps, pass_targets=args.pass_targets, data=data),
                         "data": label})
        except torch.OutOfMemoryError as e:  # the point of a micro-batch: report it, time the next size
            rows.append({"batch_size": bindings["batch_size"], "micro_batch_size": size, "error": f"out of memory ({e})"[:80]})
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(markdown(args.config, str(device), rows, label))
    write_json(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
