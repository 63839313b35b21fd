"""Time to quality: from raw Amazon Beauty to test metrics, every stage timed.

    python -m studies.time_to_quality --root ../shared/data/amazon --device cuda          # fast configs
    python -m studies.time_to_quality --root ../shared/data/amazon --device cpu \\
        --rqvae-config configs/rqvae_amazon_cpu.gin --decoder-config configs/decoder_amazon_cpu.gin

Stages, each with its own wall time:
  features   parse the raw files (or read the processed cache) and build ItemData/SeqData;
             the item text embedding is included unless it was already cached (the table says which)
  stage 1    train_rqvae.py     (RQ-VAE, semantic IDs)
  stage 2    train_decoder.py   (retrieval model, selection on the validation split)
  test       evaluate.py --split test (best-on-validation checkpoint, beam search)
Stages 1, 2 and test run per seed (`--seeds`), each seed in its own run folders under
--out-dir. Prints a markdown table (per seed, then the mean over seeds) and writes the
same as JSON (time_to_quality.json) and markdown (time_to_quality.md) into --out-dir.

`--parallel N` runs N seeds at a time, each in its own process (its log in
<out-dir>/seed_<seed>/log.txt, copied to stderr when it ends): a small model leaves most of a
large GPU idle (on an H200 a stage-2 step of the fast recipe ran at ~2-3% of the card's bf16
rate), so 3 seeds side by side should take much less than 3 times one (to be measured). Each
seed's stage times then include the sharing; the table says so and gives the wall time of all
seeds together.

Each stage is the entry point's `main(argv)`, called in this process with the same
arguments a user would type (the JSON records them per seed), so the stage times leave
out the interpreter's start (a second or two per command for a user). Stage 2 and the test
evaluation share the decoder config and bindings, as `evaluate.py` expects.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import gin
import torch

from bench.device_info import device_name, software_versions
from data.item_embeddings import cache_path
from data.item_text import TEXT_TEMPLATE
from data.processed import ItemData, SeqData, as_dataset, cache_folder, load_processed
from evaluation.protocols import PROTOCOLS
from runtime.atomic_io import atomic_write_text
from studies.cli import add_data_arguments, add_pipeline_arguments, check_pipeline_arguments

# The three entry points, imported before any of them parses a config (gin refuses new
# configurables once a config has been parsed).
import evaluate  # noqa: E402
import train_decoder  # noqa: E402
import train_rqvae  # noqa: E402

ENTRY_POINTS = {"train_rqvae": train_rqvae, "train_decoder": train_decoder, "evaluate": evaluate}

METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
STAGES = ("stage1_s", "stage2_s", "test_eval_s")


def run_entry_point(module: str, argv: list[str]) -> tuple[dict, float]:
    """<module>.main(argv) in this process -> (its result, wall seconds). Its JSON line goes to
    stderr with its logs, so this script's stdout is the table alone."""
    entry = ENTRY_POINTS[module]
    gin.clear_config()  # each entry point starts from its own config
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.synchronize()
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        result = entry.main(argv)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def build_features(root: str, dataset: str, split: str, cache_dir: str, encoder_model: str | None) -> dict:
    """Parse the raw data (or read the processed cache), embed the item texts (or read them),
    build the leave-one-out splits; what stage 1 and 2 then read from the cache."""
    ds = as_dataset(dataset)
    folder = cache_folder(cache_dir, ds, split)
    processed_cached = (folder / "interactions.parquet").is_file() and (folder / "items.pt").is_file()
    start = time.perf_counter()
    raw = load_processed(root, ds, split, cache_dir)
    parse_s = time.perf_counter() - start
    embeddings_cached = cache_path(folder, raw.texts, encoder_model, TEXT_TEMPLATE).is_file()
    start = time.perf_counter()
    items = ItemData(root, ds, split, "all", cache_dir=cache_dir, encoder_model=encoder_model)
    items_s = time.perf_counter() - start
    start = time.perf_counter()
    sizes = {subset: len(SeqData(root, ds, split, subset, cache_dir=cache_dir)) for subset in ("train", "valid", "test")}
    seq_s = time.perf_counter() - start
    return {"features_s": parse_s + items_s + seq_s, "parse_s": parse_s, "item_data_s": items_s, "seq_data_s": seq_s,
            "processed_cached": processed_cached, "embeddings_cached": embeddings_cached,
            "n_items": items.n_items, "feature_dim": items.feature_dim, "examples": sizes}


def run_seed(seed: int, args: argparse.Namespace, out_dir: Path) -> dict:
    seed_dir = out_dir / f"seed_{seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    common = [f'train.dataset_folder="{args.root}"', f'train.dataset="{args.dataset}"', f'train.split="{args.split}"',
              f'train.cache_dir="{args.cache_dir}"', f"train.seed={seed}"]
    rqvae_argv = [args.rqvae_config] + [a for b in [*common, f'train.save_dir="{seed_dir / "rqvae"}"',
                                                    f'train.device="{args.device}"', *args.gin, *args.rqvae_gin]
                                         for a in ("--gin", b)]
    decoder_bindings = [*common, f'train.tokenizer_dir="{seed_dir / "rqvae"}"', f'train.save_dir="{seed_dir / "decoder"}"',
                        f'train.device="{args.device}"', *args.gin, *args.decoder_gin]
    decoder_argv = [args.decoder_config] + [a for b in decoder_bindings for a in ("--gin", b)]
    eval_argv = [*decoder_argv, "--split", "test"]

    print(f"seed {seed}: stage 1 (train_rqvae.py)", file=sys.stderr)
    rqvae, stage1_s = run_entry_point("train_rqvae", rqvae_argv)
    print(f"seed {seed}: stage 2 (train_decoder.py)", file=sys.stderr)
    decoder, stage2_s = run_entry_point("train_decoder", decoder_argv)
    print(f"seed {seed}: test evaluation (evaluate.py)", file=sys.stderr)
    test, test_s = run_entry_point("evaluate", eval_argv)
    return {
        "seed": seed, "stage1_s": stage1_s, "stage2_s": stage2_s, "test_eval_s": test_s,
        # "valid" and "test": the ranking protocol best.pt was selected on; every protocol's test in test_by_protocol
        "protocol": test["protocol"],
        "valid": {k: decoder["best_valid"][k] for k in METRICS}, "test": {k: test["tiger"][k] for k in METRICS},
        "test_by_protocol": {p: {k: test[p]["tiger"][k] for k in METRICS} for p in PROTOCOLS},
        "best_step": decoder["best_step"], "decoder_steps": decoder["steps"],
        "collision_share": rqvae.get("collision_share"), "test_invalid_id_share": test["tiger"]["invalid_id_share"],
        "popularity_test": {k: test["popularity"][k] for k in METRICS},
        "inner_seconds": {"rqvae_train": rqvae.get("wall_time_s"), "decoder_train": decoder.get("train_seconds"),
                          "test_beam_search": test.get("eval_seconds")},
        "argv": {"train_rqvae.py": rqvae_argv, "train_decoder.py": decoder_argv, "evaluate.py": eval_argv},
    }


def run_seed_logged(seed: int, args: argparse.Namespace, out_dir: Path) -> dict:
    """run_seed in a worker process of --parallel, its stdout and stderr (tqdm, warnings, C-level output
    too) in <out_dir>/seed_<seed>/log.txt so that the seeds' logs do not interleave."""
    log_path = out_dir / f"seed_{seed}" / "log.txt"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            return run_seed(seed, args, out_dir)
        except SystemExit as e:  # an entry point's user error: a pool passes exceptions on, but not exits
            raise RuntimeError(f"exit status {e.code}") from None


def log_without_redraws(text: str) -> str:
    """A log with each line's progress-bar redraws ('\\r') reduced to the last one that shows something."""
    lines = ([p for p in line.split("\r") if p.strip()] for line in text.split("\n"))
    return "\n".join(pieces[-1] if pieces else "" for pieces in lines)


def run_seeds_in_parallel(args: argparse.Namespace, out_dir: Path) -> list[dict]:
    """Every seed's run_seed in its own process, args.parallel at a time; results in --seeds order."""
    # spawn: fresh interpreters, each with its own CUDA context and gin state (fork would copy this one's).
    context = multiprocessing.get_context("spawn")
    runs: dict[int, dict] = {}
    with context.Pool(args.parallel, maxtasksperchild=1) as pool:
        pending = {seed: pool.apply_async(run_seed_logged, (seed, args, out_dir)) for seed in args.seeds}
        print(f"seeds {' '.join(map(str, args.seeds))}: {args.parallel} at a time, "
              f"logs in {out_dir}/seed_<seed>/log.txt", file=sys.stderr)
        while pending:
            for seed, job in list(pending.items()):
                if job.ready():
                    del pending[seed]
                    log = out_dir / f"seed_{seed}" / "log.txt"
                    print(f"=== seed {seed}: {log}\n{log_without_redraws(log.read_text(errors='replace'))}", file=sys.stderr)
                    try:
                        runs[seed] = job.get()
                    except Exception as e:  # its log, printed above, says why
                        raise SystemExit(f"seed {seed} failed ({e}): see {log}") from None
            time.sleep(0.5)
    return [runs[seed] for seed in args.seeds]


def mean_over_seeds(runs: list[dict], features_s: float) -> dict:
    mean = lambda xs: sum(xs) / len(xs)
    out = {k: mean([r[k] for r in runs]) for k in STAGES}
    for split in ("valid", "test"):
        out[split] = {k: mean([r[split][k] for r in runs]) for k in METRICS}
    out["test_by_protocol"] = {p: {k: mean([r["test_by_protocol"][p][k] for r in runs]) for k in METRICS}
                               for p in PROTOCOLS}
    out["total_s"] = features_s + sum(out[k] for k in STAGES)
    return out


def markdown(result: dict) -> str:
    f = result["features"]
    lines = [f"# Time to quality: {result['dataset']} {result['split']}", "",
             f"Device: {result['device_name']}; torch {result['torch']}, triton {result['versions']['triton']}, "
             f"CUDA {result['versions']['cuda']}, Python {result['versions']['python']}. Configs: `{result['rqvae_config']}`, "
             f"`{result['decoder_config']}`" + (f"; extra bindings: {', '.join(result['gin'])}" if result["gin"] else "") + ".",
             f"Features (once for all seeds): {f['features_s']:.1f} s = parse {f['parse_s']:.1f} s "
             f"({'processed cache' if f['processed_cached'] else 'from raw files'}) + ItemData {f['item_data_s']:.1f} s "
             f"(embeddings {'CACHED, not recomputed' if f['embeddings_cached'] else 'computed'}) + SeqData {f['seq_data_s']:.1f} s.",
             "Total = features + stage 1 + stage 2 + test evaluation, one seed's pipeline. "
             f"Validation: best step's metrics (the model selection split); test: that checkpoint; both on the "
             f"{result['runs'][0]['protocol']} protocol, best.pt's selection, and the test on the plain protocol "
             "(the paper's) in the last two columns."
             + (f" Seeds ran {result['parallel']} at a time, each in its own process on the same device: "
                f"their stage times include the sharing; all {len(result['runs'])} seeds took "
                f"{result['seeds_wall_s']:.1f} s together." if result.get("parallel", 1) > 1 else ""), "",
             "| seed | stage 1 s | stage 2 s | test eval s | total s | valid R@5 | valid R@10 | valid N@5 | valid N@10 "
             "| test R@5 | test R@10 | test N@5 | test N@10 | plain test R@10 | plain test N@10 |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def row(name: str, r: dict) -> str:
        total = f["features_s"] + sum(r[k] for k in STAGES)
        cells = [f"{r[k]:.1f}" for k in STAGES] + [f"{total:.1f}"]
        cells += [f"{r[s][k]:.4f}" for s in ("valid", "test") for k in METRICS]
        cells += [f"{r['test_by_protocol']['plain'][k]:.4f}" for k in ("recall@10", "ndcg@10")]
        return f"| {name} | " + " | ".join(cells) + " |"

    lines += [row(str(r["seed"]), r) for r in result["runs"]]
    lines.append(row(f"**mean of {len(result['runs'])}**", result["mean"]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser, cache_dir="cache")
    parser.add_argument("--out-dir", default="out/time_to_quality", help="run folders, logs, JSON and table")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--encoder-model", default=None, help="sentence encoder (default: the offline all-MiniLM-L6-v2)")
    add_pipeline_arguments(parser, parallel_help="seeds run at a time, each in its own process",
                           decoder_gin_help="binding for stage 2 and the test evaluation")
    args = parser.parse_args(argv)
    check_pipeline_arguments(args)
    if len(set(args.seeds)) != len(args.seeds):
        raise SystemExit(f"--seeds {' '.join(map(str, args.seeds))}: a seed is named twice (one run folder per seed)")
    args.parallel = min(args.parallel, len(args.seeds))  # processes actually side by side
    if args.encoder_model is not None:
        args.rqvae_gin = [f'train.encoder_model="{args.encoder_model}"', *args.rqvae_gin]
    args.root, args.cache_dir = str(Path(args.root).resolve()), str(Path(args.cache_dir).resolve())
    out_dir = Path(args.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    print("features (raw data, item embeddings, leave-one-out splits)", file=sys.stderr)
    features = build_features(args.root, args.dataset, args.split, args.cache_dir, args.encoder_model)
    start = time.perf_counter()
    if args.parallel > 1:
        runs = run_seeds_in_parallel(args, out_dir)
    else:
        runs = [run_seed(seed, args, out_dir) for seed in args.seeds]
    seeds_wall_s = time.perf_counter() - start
    result = {"dataset": args.dataset, "split": args.split, "device": args.device, "device_name": device_name(args.device),
              "parallel": args.parallel, "seeds_wall_s": seeds_wall_s,
              "torch": torch.__version__, "versions": software_versions(), "rqvae_config": args.rqvae_config, "decoder_config": args.decoder_config,
              "gin": [*args.gin, *(f"(stage 1) {b}" for b in args.rqvae_gin), *(f"(stage 2) {b}" for b in args.decoder_gin)],
              "features": features, "runs": runs, "mean": mean_over_seeds(runs, features["features_s"])}
    table = markdown(result)
    atomic_write_text(json.dumps(result, indent=1) + "\n", out_dir / "time_to_quality.json")
    atomic_write_text(table, out_dir / "time_to_quality.md")
    print(table)
    return result


if __name__ == "__main__":
    main()
