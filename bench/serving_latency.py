"""Serving speed of `Recommender.recommend` (not a test): one user's latency and users per second in batches.

    python -m bench.serving_latency RUN_OR_MODEL_FOLDER [--users 300] [--batch-sizes 1,64,256,1024]
        [--threads 1] [--device cpu] [--json out.json] [--dataset-folder ... --cache-dir ...]

Histories are real: the test split's (each user's items before the test target, the last max_seq_len of
them), asked in the data set's own ids, as a caller would, under the run's protocol. Batch size 1 reports
the latency of one request (p50, p90, p99 over `--users` requests, after 10 untimed warm-up requests);
larger batches report users per second (each batch timed whole, `--users` users at least). Everything is
measured in process, wall clock, with `torch.set_num_threads(--threads)`.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

from bench.results_file import write_json
from data.processed import SeqData
from serving import load_recommender


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.serving_latency", description=__doc__.split("\n")[0])
    parser.add_argument("path", help="a decoder run folder or an exported model folder")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--batch-sizes", default="1,64,256,1024")
    parser.add_argument("--threads", type=int, default=1)  # on 2 busy cores, 2 threads were 70x slower per request
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dataset-folder")
    parser.add_argument("--cache-dir")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run_paths = {k: v for k, v in (("dataset_folder", args.dataset_folder), ("cache_dir", args.cache_dir)) if v}
    rec = load_recommender(args.path, device=args.device, **run_paths)

    # Real histories in the data set's own ids: the test split's inputs, spread over the users.
    if rec.data is None:
        raise SystemExit("a model folder holds no histories: point at the decoder run folder")
    root, dataset, split, cache_dir = rec.data
    test = SeqData(root, dataset, split, "test", rec.max_seq_len, cache_dir)
    index = torch.linspace(0, len(test) - 1, min(len(test), max(args.users, 1024))).long()
    histories = [[rec.item_ids[i] for i in h[h >= 0].tolist()] for h in test.history_batch(index)]
    rows = []
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        if batch_size == 1:
            for h in histories[:10]:
                rec.recommend(h, k=10)  # warm-up: allocator, first-call overheads
            times = []
            for h in histories[:args.users]:
                start = time.perf_counter()
                rec.recommend(h, k=10)
                times.append(time.perf_counter() - start)
            rows.append({"batch": 1, "requests": len(times), "p50_ms": 1e3 * statistics.median(times),
                         "p90_ms": 1e3 * percentile(times, 90), "p99_ms": 1e3 * percentile(times, 99),
                         "users_per_second": len(times) / sum(times)})
        else:
            batches = [histories[i:i + batch_size] for i in range(0, len(histories), batch_size)]
            batches = [b for b in batches if len(b) == batch_size] or batches[:1]
            rec.recommend(batches[0], k=10)  # warm-up
            n, seconds = 0, 0.0
            for b in batches:
                start = time.perf_counter()
                rec.recommend(b, k=10)
                seconds += time.perf_counter() - start
                n += len(b)
                if n >= args.users:
                    break
            rows.append({"batch": batch_size, "requests": n, "users_per_second": n / seconds,
                         "ms_per_batch": 1e3 * seconds / max(1, n // batch_size)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    machine = (torch.cuda.get_device_name() if rec.device.type == "cuda"
               else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads")
    out = {"path": args.path, "model": repr(rec), "device": str(rec.device), "machine": machine,
           "protocol": rec.protocol, "torch": torch.__version__, "rows": rows}
    print(f"| batch | users | p50 ms | p90 ms | p99 ms | users / s |\n|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cells = [f"{r[k]:.1f}" if k in r else "" for k in ("p50_ms", "p90_ms", "p99_ms")]
        print(f"| {r['batch']} | {r['requests']:,} | {' | '.join(cells)} | {r['users_per_second']:,.0f} |")
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
