"""Benchmark (not a test): MovieLens 32M at its real size, every stage, on this machine.

    python -m bench.movielens_32m --work /big/ml32m [--out bench/results/movielens_32m.md]

Each step is a child process started in `<work>` (so the configs' relative `cache` and `out/`
folders land there), with `nice -n 19` and one torch thread, and measured with os.wait4:
wall time, CPU time (user + system: on a shared machine the wall time is an upper bound, the
CPU time is what the step costs) and peak resident memory. A step that finished is not rerun
(`<work>/logs/<step>.json`; delete it to rerun): on a busy machine the whole run takes hours.

  generate   python -m bench.make_movielens_standin --out data --size 32m   (skipped if present)
  data       python -m data --dataset ml-32m --root data --cache-dir cache  (raw -> caches, 87k titles embedded)
  data again the same, served from the caches (what each training start pays)
  rqvae      python train_rqvae.py configs/rqvae_ml32m.gin + dataset_folder, iterations, num_threads
  decoder    python train_decoder.py configs/decoder_ml32m.gin + dataset_folder, iterations,
             valid_max_users, num_threads: the paper's batch of 256, in the config's micro-batches
  steps      this module's `--time-steps`: seconds per RQ-VAE step, and the decoder's FLOPs and
             activation memory per example (torch.utils.flop_counter, saved-tensor hooks), from which
             the paper's 400k decoder steps on one H100 are extrapolated at an assumed achievable rate.
             The decoder's seconds per step are the `decoder` run's own (its training loop).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAPER_DECODER_STEPS = 400_000
PAPER_BATCH = 256
H100_ACHIEVABLE_TFLOPS = 100.0  # assumed: ~1/8 of the ~800 TFLOP/s a large bf16 matmul reaches on an H100;
# a d_model-128 model's skinny matmuls and 801-token attention run far below that peak.


def run_child(name: str, argv: list[str], cwd: Path, log: Path) -> dict:
    """Run `nice -n 19 <argv>` in `cwd`, stdout+stderr to `log`; -> wall, cpu, peak RSS, last JSON line.
    A step that already succeeded (its `<log>.json` exists) is not run again: delete it to rerun."""
    done = log.with_suffix(".json")
    if done.is_file():
        return json.loads(done.read_text())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "POLARS_MAX_THREADS": "2",
           "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(argv)}", file=sys.stderr, flush=True)
    start = time.time()
    with open(log, "w") as out:
        child = subprocess.Popen(["nice", "-n", "19", *argv], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.time() - start
    code = os.waitstatus_to_exitcode(status)
    lines = log.read_text(errors="replace").strip().splitlines()
    result = None
    for line in reversed(lines):
        if line.startswith("{"):
            result = json.loads(line)
            break
    shown = shlex.join(["python" if a == sys.executable else a.replace(f"{REPO}/", "") for a in argv])
    row = {"name": name, "command": shown, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
           "peak_rss_gib": usage.ru_maxrss / 2**20, "exit_code": code, "result": result}
    print(f"    exit {code}, wall {wall:.0f}s, cpu {row['cpu_s']:.0f}s, peak {row['peak_rss_gib']:.2f} GiB",
          file=sys.stderr, flush=True)
    if code != 0:
        print("\n".join(lines[-30:]), file=sys.stderr)
        raise SystemExit(f"{name} failed (exit {code}); log: {log}")
    done.write_text(json.dumps(row))
    return row


def time_steps(work: Path) -> dict:
    """Seconds and FLOPs per training step of stage 1 (configs/rqvae_ml32m.gin's model, batch 1024 of
    the cached item features); FLOPs and activation memory per example of stage 2 (configs/decoder_ml32m.gin's
    model on real examples gathered by ResidentExamples, as train_decoder.py does), counted at a small
    batch: every op of the decoder is per example."""
    import contextlib

    import gin
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import train_decoder
    from data.batching import ResidentExamples
    from data.processed import ItemData, SeqData
    from modules.rqvae import RqVae
    from modules.tokenizer import SemanticIdTokenizer
    from runtime.gin_cli import load_gin_config
    from runtime.optimizer import build_optimizer
    from runtime.run_folder import existing_tokenizer_path

    torch.set_num_threads(1)
    torch.manual_seed(0)
    root, cache = str(work / "data"), str(work / "cache")
    out = {}

    def timed(step, n):
        step()  # warm-up
        start = time.process_time()
        for _ in range(n):
            step()
        return (time.process_time() - start) / n

    def saved_for_backward(step):
        """Bytes of the tensors autograd keeps for the backward pass (each storage once): the
        activation memory of a training step, which grows with the batch."""
        storages = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            step()
        return sum(storages.values())

    def flops(step):
        with FlopCounterMode(display=False) as counter:
            step()
        return counter.get_total_flops()

    features = ItemData(root, "ml-32m", "ml-32m", subset="train", cache_dir=cache).features
    rqvae = RqVae(input_dim=features.shape[1], hidden_dims=(512, 256, 128), latent_dim=32, codebook_size=256, n_layers=3,
                  commitment_weight=0.25, forward_mode="ste")
    rqvae.init_codebooks(features[:1024], 20)
    opt = torch.optim.AdamW(rqvae.parameters(), lr=0.003)

    def rqvae_step(batch=1024):
        x = features[torch.randint(len(features), (batch,))]
        loss = rqvae(x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()

    out["rqvae"] = {"batch": 1024, "cpu_s_per_step": timed(rqvae_step, 20), "flops_per_step": flops(rqvae_step)}

    data = SeqData(root, "ml-32m", "ml-32m", "train", 200, cache)
    tokenizer = SemanticIdTokenizer.load(existing_tokenizer_path(str(work / "out" / "rqvae"), "ml-32m", "ml-32m"))
    resident = ResidentExamples(data, tokenizer.sem_ids, torch.device("cpu"))
    gin.clear_config()
    load_gin_config(train_decoder.train, str(REPO / "configs" / "decoder_ml32m.gin"), [])
    bindings = gin.get_bindings(train_decoder.train)
    gin.clear_config()
    model = train_decoder.build_model(tokenizer.sem_ids, tokenizer.codebook_size, 200, bindings)
    opt = build_optimizer(model, bindings["optimizer"], bindings["learning_rate"], bindings["weight_decay"])
    trie = tokenizer.trie() if bindings["constrained_softmax"] else None

    def decoder_step(batch):  # train_decoder.py's step, the same function (the CPU's fp32, one piece)
        b = resident.batch(torch.randint(len(resident), (batch,)))
        train_decoder.train_step(model, model, b, opt, contextlib.nullcontext(), trie=trie, grad_clip=bindings["grad_clip"])

    flops_8 = flops(lambda: decoder_step(8))
    # Without dropout the CPU's attention takes the fused kernel, which keeps no [B, heads, 801, 801]
    # matrix: the activation memory a GPU's memory-efficient kernel (dropout included) gets close to.
    no_dropout = train_decoder.build_model(tokenizer.sem_ids, tokenizer.codebook_size, 200, {**bindings, "dropout": 0.0})

    def forward_no_dropout(batch=8):
        b = resident.batch(torch.randint(len(resident), (batch,)))
        no_dropout.loss(no_dropout(b["user_ids"], b["history"], b["target"]), b["target"]).backward()

    out["decoder"] = {"flops_per_example": flops_8 / 8, "flops_per_paper_step": flops_8 / 8 * PAPER_BATCH,
                      "saved_bytes_per_example": saved_for_backward(lambda: decoder_step(8)) / 8,
                      "saved_bytes_per_example_fused": saved_for_backward(forward_no_dropout) / 8,
                      "train_examples": len(data), "interactions": len(data.items)}
    return out


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def gib(x: float) -> str:
    return f"{x:.2f}"


def minutes(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def report(rows: list[dict], steps: dict, args, load: tuple[str, str]) -> str:
    by = {r["name"]: r for r in rows}
    stats = by["data"]["result"]
    dec, rq = steps["decoder"], steps["rqvae"]
    paper_flops = dec["flops_per_paper_step"] * PAPER_DECODER_STEPS
    lines = [
        "# MovieLens 32M at real size: every stage on 2 CPU cores / 24 GiB",
        "",
        f"    python -m bench.movielens_32m --work {args.work}",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPU cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, no GPU; "
        f"python {platform.python_version()}. Every step ran with `nice -n 19` and one torch thread "
        f"**on a machine shared with other jobs** (load average {load[0]} at the start, {load[1]} at the end): "
        "wall times are upper bounds; CPU time (user + system of the child) is the step's own cost.",
        "",
        f"Data: the stand-in (`bench/make_movielens_standin.py --size 32m`, GroupLens' ml-32m format and counts): "
        f"after the 5-rating filter {stats['users']:,} users, {stats['items']:,} movies, {stats['interactions']:,} "
        f"ratings; {stats['train']:,} / {stats['valid']:,} / {stats['test']:,} train / valid / test examples; "
        f"histories up to {stats['max_seq_len']} items (encoder input {1 + 4 * stats['max_seq_len']} tokens), "
        f"{stats['avg_sequence_length']} on average; item features {stats['feature_dim']}-d (title embedding + genres).",
        "",
        "| step | wall | CPU | peak RSS (GiB) | notes |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    notes = {
        "generate": "writes raw/ml-32m/ratings.csv (32,000,204 rows) + movies.csv",
        "data": "parse CSV, 5-rating filter, sort, parquet cache, leave-one-out, embed the movie titles (MiniLM, CPU)",
        "data again": "everything from the checksummed caches",
        "rqvae": "",
        "decoder": "",
        "steps": "this module's RQ-VAE step timing and the decoder's FLOP/memory counts (below); loads the caches",
    }
    if "rqvae" in by:
        r = by["rqvae"]["result"]
        notes["rqvae"] = (f"{r['step']} steps of batch 1024 + k-means init + eval + semantic IDs of all items; "
                          f"collisions {r['collision_share']:.1%}, IDs unique: max collision token {r['max_collision_token']}")
    r = by["decoder"]["result"]
    decoder_s = (r["train_seconds"] - r["eval_seconds"]) / r["steps"]  # the real run's seconds per step (1 thread)
    metrics = r["best_valid"]
    notes["decoder"] = (f"{r['steps']} steps of batch {r['batch_size']} ({r['batch_size'] // r['micro_batch_size']} "
                        f"micro-batches of {r['micro_batch_size']}) then validation (beam 10) on "
                        f"{args.valid_users} users: training loop {decoder_s * r['steps']:.0f} s "
                        f"({1 / decoder_s:.4f} steps/s), validation + checkpoints "
                        f"{r['eval_seconds']:.0f} s; "
                        f"valid recall@10 {metrics['recall@10']:.4f} (untrained)")
    for row in rows:
        lines.append(f"| {row['name']} | {minutes(row['wall_s'])} | {minutes(row['cpu_s'])} | {gib(row['peak_rss_gib'])} | "
                     f"{notes.get(row['name'], '')} |")
    hours = paper_flops / (H100_ACHIEVABLE_TFLOPS * 1e12) / 3600
    lines += [
        "",
        "Commands (run in the work folder; `data` = the stand-in's root):",
        "",
        *[f"    {r['command']}" for r in rows],
        "",
        "## Training steps and the paper's 400k decoder steps on one H100",
        "",
        "| model | batch | CPU s / step (1 thread) | steps / s (CPU) | FLOPs / step |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| RQ-VAE (rqvae_ml32m.gin) | 1024 | {rq['cpu_s_per_step']:.2f} | {1 / rq['cpu_s_per_step']:.2f} | "
        f"{rq['flops_per_step'] / 1e9:.1f} G |",
        f"| decoder (decoder_ml32m.gin, the `decoder` run) | {r['batch_size']} in {r['micro_batch_size']}s | "
        f"{decoder_s:.0f} (wall) | {1 / decoder_s:.4f} | {dec['flops_per_example'] * r['batch_size'] / 1e12:.2f} T |",
        "",
        f"Activation memory of a decoder training step (tensors kept for the backward pass, counted with "
        f"autograd's saved-tensor hooks): **{dec['saved_bytes_per_example'] / 2**20:.0f} MiB per example** on the CPU, "
        f"i.e. {dec['saved_bytes_per_example'] * PAPER_BATCH / 2**30:.0f} GiB at the paper's batch of 256 at once. On the CPU, "
        "PyTorch's attention with dropout (p = 0.1) takes the math path, which keeps each layer's [B, 6, 801, 801] "
        "attention weights and dropout mask; this is why decoder_ml32m.gin binds `train.micro_batch_size = 32`: "
        f"the batch's gradient accumulated over {r['batch_size'] // r['micro_batch_size']} micro-batches, "
        f"{dec['saved_bytes_per_example'] * r['micro_batch_size'] / 2**30:.0f} GiB of activations each. Without dropout "
        "the CPU takes the fused attention kernel, which keeps no 801 x 801 matrix: "
        f"{dec['saved_bytes_per_example_fused'] / 2**20:.0f} MiB per example, "
        f"{dec['saved_bytes_per_example_fused'] * PAPER_BATCH / 2**30:.0f} GiB at 256 (fp32). A GPU's memory-efficient "
        "kernel handles dropout too, so this is the estimate for a GPU step (less under bf16 autocast); "
        "not measured on a GPU here.",
        "",
        f"FLOPs are counted by `torch.utils.flop_counter` (matmuls and attention, forward + backward) and are "
        f"per example, so they scale with the batch. 400,000 steps x {dec['flops_per_paper_step'] / 1e12:.2f} TFLOP = "
        f"{paper_flops / 1e18:.2f} EFLOP: on one H100 at an assumed **{H100_ACHIEVABLE_TFLOPS:.0f} TFLOP/s achievable** "
        f"(bf16; about 1/8 of the ~800 TFLOP/s a large bf16 matmul reaches there) that is **{hours:.1f} h** "
        f"({hours / 2:.1f} h at 200, {hours * 2:.1f} h at 50 TFLOP/s). On this CPU (one thread) the same run would take "
        f"{decoder_s * PAPER_DECODER_STEPS / 86400 / 365:.1f} years.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.movielens_32m", description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="a folder with room for ~4 GB (never committed)")
    parser.add_argument("--out", type=Path, help="write the markdown report here (default: print it)")
    parser.add_argument("--rqvae-steps", type=int, default=300)
    parser.add_argument("--decoder-steps", type=int, default=3)
    parser.add_argument("--valid-users", type=int, default=300)
    parser.add_argument("--time-steps", action="store_true", help=argparse.SUPPRESS)  # the child of the `steps` step
    args = parser.parse_args(argv)
    work = args.work.resolve()
    if args.time_steps:
        print(json.dumps(time_steps(work)))
        return
    work.mkdir(parents=True, exist_ok=True)
    (work / "logs").mkdir(exist_ok=True)
    load_start = f"{os.getloadavg()[0]:.1f}"
    py = sys.executable
    gin = lambda *bindings: [a for b in bindings for a in ("--gin", b)]
    data_folder = 'train.dataset_folder="data"'  # relative to <work>, where every step runs
    rows = []
    step = lambda name, argv: rows.append(run_child(name, argv, work, work / "logs" / f"{name.replace(' ', '_')}.log"))
    if not (work / "data" / "raw" / "ml-32m" / "ratings.csv").is_file() or (work / "logs" / "generate.json").is_file():
        step("generate", [py, "-m", "bench.make_movielens_standin", "--out", "data", "--size", "32m"])
    step("data", [py, "-m", "data", "--dataset", "ml-32m", "--root", "data", "--cache-dir", "cache"])
    step("data again", [py, "-m", "data", "--dataset", "ml-32m", "--root", "data", "--cache-dir", "cache"])
    step("rqvae", [py, str(REPO / "train_rqvae.py"), str(REPO / "configs" / "rqvae_ml32m.gin"),
                   *gin(data_folder, f"train.iterations={args.rqvae_steps}", "train.num_threads=1")])
    decoder_caps = [data_folder, f"train.iterations={args.decoder_steps}", f"train.valid_max_users={args.valid_users}",
                    "train.num_threads=1"]
    if not (work / "logs" / "decoder.json").is_file():  # a fresh run, not a resume of an earlier benchmark's
        shutil.rmtree(work / "out" / "decoder", ignore_errors=True)
    step("decoder", [py, str(REPO / "train_decoder.py"), str(REPO / "configs" / "decoder_ml32m.gin"), *gin(*decoder_caps)])
    timing = run_child("steps", [py, "-m", "bench.movielens_32m", "--work", str(work), "--time-steps"],
                       work, work / "logs" / "steps.log")
    rows.append({**timing, "command": "python -m bench.movielens_32m --time-steps (step timing, FLOP counts)"})
    text = report(rows, timing["result"], args, (load_start, f"{os.getloadavg()[0]:.1f}"))
    (work / "rows.json").write_text(json.dumps(rows, indent=1))
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
