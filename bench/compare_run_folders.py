"""Are two runs the same run? Compares two output folders of the same short pipeline tensor by tensor.

    python -m bench.compare_run_folders BEFORE AFTER [--json out.json]

Each folder holds `rqvae/<dataset>-<split>/` (stage 1), `decoder/<dataset>-<split>/` (stage 2) and
`evaluate.json` (evaluate.py's stdout; its last line is the result). Stage 1's semantic_ids.pt and
checkpoint.pt, stage 2's best.pt and checkpoint.pt are loaded and every tensor in them compared for exact
equality; evaluate.py's rows for TIGER and the floors are compared value by value under each protocol the
BEFORE run reports (a run from before both protocols were kept reports one, at its top level, named by the
AFTER run's `protocol` or given with --protocol). Used to show that a restructuring changed no number.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Iterator

import torch

from bench.results_file import write_json

CHECKPOINTS = ("rqvae/{run}/semantic_ids.pt", "rqvae/{run}/checkpoint.pt", "decoder/{run}/best.pt",
               "decoder/{run}/checkpoint.pt")
ROWS = ("tiger", "popularity", "transition")


def tensors(obj: object, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in a nested dict/list (a checkpoint), with its path of keys."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from tensors(value, f"{prefix}/{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from tensors(value, f"{prefix}/{i}")


def compare_checkpoints(a: Path, b: Path) -> dict:
    x = dict(tensors(torch.load(a, map_location="cpu", weights_only=True)))
    y = dict(tensors(torch.load(b, map_location="cpu", weights_only=True)))
    differing = [k for k in x.keys() & y.keys() if not (x[k].shape == y[k].shape and torch.equal(x[k], y[k]))]
    return {"tensors": len(x), "same_names": x.keys() == y.keys(), "differing": sorted(differing)}


def last_json_line(path: Path) -> dict:
    return json.loads(path.read_text().strip().splitlines()[-1])


def compare(before: Path, after: Path, run: str = "amazon-beauty", protocol: str | None = None) -> dict:
    out = {"checkpoints": {name.format(run=run): compare_checkpoints(before / name.format(run=run), after / name.format(run=run))
                           for name in CHECKPOINTS}}
    a, b = last_json_line(before / "evaluate.json"), last_json_line(after / "evaluate.json")
    protocol = protocol or b.get("protocol", "plain")
    b_rows = b.get(protocol, b)  # the AFTER run's rows of that protocol
    out["evaluate"] = {"protocol": protocol, "checkpoint_step": [a["checkpoint_step"], b["checkpoint_step"]],
                       "rows_equal": {row: all(b_rows[row].get(k) == v for k, v in a[row].items()) for row in ROWS},
                       "before": {row: a[row] for row in ROWS}, "after": {row: b_rows[row] for row in ROWS}}
    out["same"] = (all(c["same_names"] and not c["differing"] for c in out["checkpoints"].values())
                   and all(out["evaluate"]["rows_equal"].values()) and a["checkpoint_step"] == b["checkpoint_step"])
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.compare_run_folders", description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--run", default="amazon-beauty", help="<dataset>-<split> of the run folders")
    parser.add_argument("--protocol", choices=("plain", "history_skipped"),
                        help="the AFTER run's protocol to compare the BEFORE run's rows with")
    parser.add_argument("--json", help="also write the comparison here")
    args = parser.parse_args(argv)
    result = compare(args.before, args.after, args.run, args.protocol)
    print(json.dumps(result, indent=1))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
