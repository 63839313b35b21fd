"""Decoder sweep: several stage-2 variants from ONE tokenizer, each within a time budget.

    python -m studies.sweep --root .gpu_carry/amazon --cache-dir /tmp/cache --out-dir /tmp/sweep \\
        --arms gpu/gpu_sweep_arms.txt --time-budget 500                 # on a GPU (gpu/gpu_check.sh MODE=sweep)

Stage 1 (train_rqvae.py) runs once; then every arm of the arms file trains the decoder
(train_decoder.py) from that tokenizer with its own gin bindings, one process per arm, so an arm
that fails or runs out of memory does not stop the others. Each arm gets an equal share of the
time left (recomputed per arm: an arm that ends early leaves its time to the rest); an arm still
training at the end of its share is stopped, and what it validated until then is reported.
Validation (never the test split) is the selection signal: per arm the best NDCG@10 and its
Recall@10, the step and the wall seconds it was reached at, and the whole curve.

`--parallel N` trains N arms at a time on the same device (a small model leaves most of a large
GPU idle: on an H200 a stage-2 step of the fast recipe ran at ~2-3% of the card's bf16 rate). The
time left is then shared by waves of N arms: an arm starting when R arms are yet to start gets the
time left divided by ceil(R / N), so with N a divisor of the number of arms every arm gets the same
share. Arms that run side by side slow each other down: compare their curves by step (and by wall
seconds only within one sweep); the table says how many ran at a time. Bind train.num_threads so that N arms' CPU
threads fit the machine's cores (gpu/gpu_check.sh does).

Where the curve comes from, per arm: <run>/curve.jsonl when train_decoder.py writes it (one JSON
object per validation); otherwise the run's final JSON line (`valid_history`), or for a stopped
arm the last checkpoint's history. Wall seconds are curve.jsonl's `wall_seconds` when present,
else the moment the sweep read the validation's log line (since the arm's process started).

Arms file: one arm per line, a name ([A-Za-z0-9._-]) then gin bindings of train_decoder.train,
separated by whitespace (quote a binding that holds spaces); '#' starts a comment. Bindings are
checked against train_decoder.train before stage 1 starts. Paths, data set and device are the
sweep's (see RESERVED). --decoder-gin bindings apply to every arm, after the arm's own.

Writes sweep.json, sweep.md (the table) and sweep.log (stage 1 and every arm's output) into --out-dir.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from bench.device_info import device_name, software_versions
from runtime.atomic_io import atomic_write_text
from studies.cli import REPO, add_data_arguments, add_pipeline_arguments, check_pipeline_arguments

ARM_NAME = re.compile(r"[A-Za-z0-9._-]+")
# Bound by the sweep for every arm: where the data, the tokenizer and the runs are, and the device.
RESERVED = ("dataset_folder", "dataset", "split", "cache_dir", "tokenizer_dir", "save_dir", "device", "resume")
# train_decoder.py's validation line: "step 2000: loss 3.1416 valid recall@1 0.0100 ... ndcg@10 0.0300"
VALIDATION_LINE = re.compile(r"step (\d+): loss (\S+) valid (.*)$")
SHOWN = ("step", "examples_seen", "wall_s", "train_loss", "recall@10", "ndcg@10", "coverage@10")


@dataclass
class Arm:
    name: str
    bindings: list[str]
    line: int  # in the arms file, for error messages
    settings: dict = field(default_factory=dict)  # effective iterations, batch_size, ... (after the config)


class Training(NamedTuple):
    """An arm being trained: its place in the arms file, its result row so far, run folder, process, deadline."""
    index: int
    row: dict
    save_dir: Path
    child: "Process"
    deadline: float  # time.time() at which it is stopped


def parse_arms(path: str | Path) -> list[Arm]:
    """The arms file -> arms, in file order; a bad line stops here, naming its file and line."""
    arms: list[Arm] = []
    for number, text in enumerate(Path(path).read_text().splitlines(), start=1):
        try:
            words = shlex.split(text, comments=True)
        except ValueError as e:
            raise SystemExit(f"{path}:{number}: {e}")
        if not words:
            continue
        name, bindings = words[0], words[1:]
        where = f"{path}:{number}: arm {name!r}"
        if not ARM_NAME.fullmatch(name):
            raise SystemExit(f"{where}: a name is letters, digits, '.', '_' or '-' (it names the run folder)")
        if any(a.name == name for a in arms):
            raise SystemExit(f"{where}: the name is used twice")
        for binding in bindings:
            parameter = binding.split("=", 1)[0].strip()
            if "=" not in binding or not parameter.startswith("train."):
                raise SystemExit(f"{where}: {binding!r} is not a binding of the form train.<parameter>=<value>")
            if parameter.removeprefix("train.") in RESERVED:
                raise SystemExit(f"{where}: {parameter} is bound by the sweep for every arm (one of {', '.join(RESERVED)})")
        arms.append(Arm(name, bindings, number))
    if not arms:
        raise SystemExit(f"{path}: no arms (one per line: a name, then gin bindings)")
    return arms


def check_arms(arms: list[Arm], decoder_config: str, before: list[str], after: list[str]) -> None:
    """Parse every arm's bindings as train_decoder.py would, before any time is spent; fill arm.settings.
    `before` and `after`: the bindings around the arm's own on the run's command line."""
    import gin

    import train_decoder
    from runtime.errors import UserError
    from runtime.gin_cli import parse_gin_args, train_defaults

    defaults = train_defaults(train_decoder.train)
    for arm in arms:
        gin.clear_config()
        try:
            bindings = [*before, *arm.bindings, *after]
            parse_gin_args(train_decoder.train, [decoder_config, *[a for b in bindings for a in ("--gin", b)]])
        except UserError as e:
            raise SystemExit(f"arm {arm.name!r} (line {arm.line}): {e}")
        config = {**defaults, **gin.get_bindings(train_decoder.train)}  # train()'s effective arguments
        arm.settings = {k: config[k] for k in ("iterations", "batch_size", "optimizer", "learning_rate", "lr_constant_steps", "eval_every")}
    gin.clear_config()


class Process:
    """A child process whose merged stdout/stderr goes to `log`, with the time each line was read."""

    def __init__(self, argv: list[str], log, env: dict[str, str], prefix: str = ""):
        self.log, self.start, self.prefix = log, time.time(), prefix  # prefix: before each log line
        self.validations: dict[int, dict] = {}  # step -> {"wall_s", "train_loss"} from the validation lines
        self.last_json: dict | None = None
        self.last_bar = ""  # tqdm's last redraw: "train:  40%|####  | 4800/12000 [...]"
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                     start_new_session=True)  # its own process group: stopped as a whole
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        buffer, bar_written = b"", 0.0
        while chunk := os.read(self.proc.stdout.fileno(), 65536):
            buffer += chunk
            # tqdm redraws its bar with '\r': keep one bar line per 15 s in the log, every '\n' line.
            *pieces, buffer = re.split(rb"(\r|\n)", buffer)
            for text, end in zip(pieces[::2], pieces[1::2]):
                if end == b"\r":
                    if text.strip():
                        self.last_bar = text.decode(errors="replace").rstrip()
                        if time.time() - bar_written > 15:
                            self.log.write(self.prefix + self.last_bar + "\n")
                            bar_written = time.time()
                    continue
                self._line(text.decode(errors="replace"))
        if buffer:
            self._line(buffer.decode(errors="replace"))
        if self.last_bar:
            self.log.write(self.prefix + self.last_bar + "\n")

    def _line(self, line: str) -> None:
        self.log.write(self.prefix + line + "\n")
        self.log.flush()
        found = VALIDATION_LINE.search(line)
        if found:
            self.validations[int(found.group(1))] = {"wall_s": round(time.time() - self.start, 2),
                                                     "train_loss": _number(found.group(2))}
        if line.startswith("{"):
            try:
                self.last_json = json.loads(line)
            except json.JSONDecodeError:
                pass

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, budget_s: float) -> str:
        """'finished', 'failed (exit N)', or 'stopped at budget' after budget_s seconds."""
        try:
            rc = self.proc.wait(timeout=max(budget_s, 0.1))
            status = "finished" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            status = "stopped at budget"
        self.reader.join()
        self.seconds = round(time.time() - self.start, 1)
        return status


def bar_steps(bar: str) -> int | None:
    """The step count in a tqdm bar line ('... | 4800/12000 [...]'), None if there is none."""
    found = re.search(r"\|\s*(\d+)/(\d+)", bar)
    return int(found.group(1)) if found else None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_curve(run: Path, final: dict | None, validations: dict[int, dict]) -> tuple[list[dict], str]:
    """One record per validation, oldest first, and where they came from (see the module's docstring)."""
    curve_file = run / "curve.jsonl"
    if curve_file.is_file():
        records = [{re.sub(r"^valid[/_]", "", k): v for k, v in json.loads(line).items()}  # "valid/ndcg@10" -> "ndcg@10"
                   for line in curve_file.read_text().splitlines() if line.strip()]
        records = [r for r in records if "ndcg@10" in r]  # validations (a curve may hold other records too)
        for r in records:
            r.setdefault("wall_s", r.get("wall_seconds", validations.get(r["step"], {}).get("wall_s")))
        return records, "curve.jsonl"
    if final is not None and "valid_history" in final:
        history, source = final["valid_history"], "final JSON line (valid_history)"
    elif (run / "checkpoint.pt").is_file():
        from runtime.checkpointing import load_checkpoint

        history, source = json.loads(load_checkpoint(run / "checkpoint.pt").get("history", "[]")), "last checkpoint's history"
    else:
        return [], "none (no validation reached)"
    return [{**h, **validations.get(h["step"], {})} for h in history], source + "; wall s: log lines"


def summarize(records: list[dict]) -> dict:
    if not records:
        return {"best": None, "last": None}
    best = max(records, key=lambda r: r["ndcg@10"])  # the first of equals: the earliest
    pick = lambda r: {k: r.get(k) for k in ("step", "wall_s", "recall@10", "ndcg@10")}
    return {"best": pick(best), "last": pick(records[-1])}


def arm_budget(left_s: float, to_start: int, parallel: int) -> float:
    """Seconds for an arm starting now, `to_start` arms (itself included) yet to start, `parallel` at a time:
    the time left over the waves still to come (1 at a time: an equal share of what is left)."""
    return left_s / math.ceil(to_start / parallel)


def run_sweep(args: argparse.Namespace) -> dict:
    start = time.time()
    out_dir = Path(args.out_dir).resolve()
    arms = parse_arms(args.arms)
    check_arms(arms, args.decoder_config, args.gin, args.decoder_gin)
    existing = [a.name for a in arms if (out_dir / "arms" / a.name).exists()]
    if existing or (out_dir / "rqvae").exists():
        raise SystemExit(f"{out_dir} already holds runs ({', '.join(existing) or 'rqvae'}): choose a new --out-dir")
    out_dir.mkdir(parents=True, exist_ok=True)
    common = [f'train.dataset_folder="{Path(args.root).resolve()}"', f'train.dataset="{args.dataset}"',
              f'train.split="{args.split}"', f'train.cache_dir="{Path(args.cache_dir).resolve()}"',
              f'train.device="{args.device}"', "train.resume=False", *args.gin]
    as_flags = lambda bindings: [a for b in bindings for a in ("--gin", b)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = {"dataset": args.dataset, "split": args.split, "device": args.device, "device_name": device_name(args.device),
              "versions": software_versions(), "rqvae_config": args.rqvae_config, "decoder_config": args.decoder_config,
              "arms_file": args.arms, "gin": args.gin, "rqvae_gin": args.rqvae_gin, "decoder_gin": args.decoder_gin,
              "time_budget_s": args.time_budget, "parallel": args.parallel, "stage1": None, "arms": []}

    with open(out_dir / "sweep.log", "w") as log:
        log.write(f"=== stage 1 (train_rqvae.py {args.rqvae_config})\n")
        stage1 = Process([sys.executable, "train_rqvae.py", args.rqvae_config,
                          *as_flags([*common, f'train.save_dir="{out_dir / "rqvae"}"', *args.rqvae_gin])], log, env)
        status = stage1.wait(args.time_budget - (time.time() - start))
        result["stage1"] = {"status": status, "seconds": stage1.seconds,
                            **{k: (stage1.last_json or {}).get(k) for k in ("collision_share", "wall_time_s")}}
        if status != "finished":
            write_results(result, out_dir)
            raise SystemExit(f"stage 1 {status}: see {out_dir / 'sweep.log'}")

        # Up to args.parallel arms at a time; each gets, when it starts, the time left divided by the
        # number of waves of args.parallel arms still to start (1 at a time: an equal share of what is left).
        pending, running, done = list(enumerate(arms)), [], {}
        while pending or running:
            while pending and len(running) < args.parallel:
                i, arm = pending.pop(0)
                left = args.time_budget - (time.time() - start)
                budget = arm_budget(left, len(pending) + 1, args.parallel)
                row = {"name": arm.name, "bindings": arm.bindings, "settings": arm.settings, "budget_s": round(budget, 1)}
                if budget < args.min_arm_seconds:
                    done[i] = {**row, "status": f"skipped ({left:.0f} s left)", "seconds": 0, "curve": [],
                               "curve_source": "none", "best": None, "last": None}
                    continue
                save_dir = out_dir / "arms" / arm.name
                argv = [sys.executable, "train_decoder.py", args.decoder_config,
                        *as_flags([*common, f'train.tokenizer_dir="{out_dir / "rqvae"}"', f'train.save_dir="{save_dir}"',
                                   *arm.bindings, *args.decoder_gin])]
                log.write(f"\n=== arm {arm.name} (budget {budget:.0f} s): {' '.join(arm.bindings) or '(the config as is)'}\n")
                print(f"arm {arm.name}: {budget:.0f} s budget", file=sys.stderr)
                prefix = f"[{arm.name}] " if args.parallel > 1 else ""
                running.append(Training(i, row, save_dir, Process(argv, log, env, prefix), time.time() + budget))
            ended = [t for t in running if not t.child.running() or time.time() >= t.deadline]
            if not ended:
                time.sleep(0.2)
            for t in ended:
                running.remove(t)
                child = t.child
                status = child.wait(t.deadline - time.time())  # at once: it ended, or its time is up
                records, source = read_curve(t.save_dir / f"{args.dataset}-{args.split}", child.last_json, child.validations)
                final = child.last_json or {}
                done[t.index] = {**t.row, "status": status, "seconds": child.seconds,
                                 "steps": final.get("steps", bar_steps(child.last_bar)),
                                 "train_seconds": final.get("train_seconds"), "curve_source": source,
                                 **summarize(records), "curve": records}
                result["arms"] = [done[k] for k in sorted(done)]
                write_results(result, out_dir)  # after every arm: a command stopped later keeps what is done
        result["arms"] = [done[k] for k in sorted(done)]
    result["total_s"] = round(time.time() - start, 1)
    write_results(result, out_dir)
    return result


def write_results(result: dict, out_dir: Path) -> None:
    atomic_write_text(json.dumps(result, indent=1) + "\n", out_dir / "sweep.json")
    atomic_write_text(markdown(result), out_dir / "sweep.md")


def _cell(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def markdown(result: dict) -> str:
    v = result["versions"]
    s1 = result["stage1"] or {}
    lines = [f"# Decoder sweep: {result['dataset']} {result['split']}, one tokenizer", "",
             f"Device: {result['device_name']}; torch {v['torch']}, triton {v['triton']}, CUDA {v['cuda']}, "
             f"Python {v['python']}.",
             f"Configs: `{result['rqvae_config']}` (stage 1, once), `{result['decoder_config']}` + each arm's bindings "
             f"(`{result['arms_file']}`)" + (f"; every arm also: {' '.join(result['decoder_gin'])}" if result["decoder_gin"] else "")
             + (f"; both stages: {' '.join(result['gin'])}" if result["gin"] else "") + ".",
             f"Stage 1: {s1.get('status')}, {_cell(s1.get('seconds'), 1)} s (process), collision share "
             f"{_cell(s1.get('collision_share'))}. Time budget {result['time_budget_s']:.0f} s for the whole sweep, "
             + (f"shared by waves of {result['parallel']} arms run side by side (their wall seconds include the sharing). "
                if result.get("parallel", 1) > 1 else "shared equally by the arms left. ")
             + "Validation split only (best = highest NDCG@10); wall s counts from the arm's start.", "",
             "| arm | bindings | status | steps | arm s | best N@10 | R@10 there | at step | at wall s | last N@10 | last R@10 |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for arm in result["arms"]:
        best, last = arm.get("best") or {}, arm.get("last") or {}
        lines.append(f"| {arm['name']} | {' '.join(arm['bindings']) or '(config)'} | {arm['status']} | "
                     f"{_cell(arm.get('steps'))} | {_cell(arm['seconds'], 1)} | {_cell(best.get('ndcg@10'))} | "
                     f"{_cell(best.get('recall@10'))} | {_cell(best.get('step'))} | {_cell(best.get('wall_s'), 1)} | "
                     f"{_cell(last.get('ndcg@10'))} | {_cell(last.get('recall@10'))} |")
    for arm in result["arms"]:
        if not arm["curve"]:
            continue
        extra = sorted({k for r in arm["curve"] for k in r if "nll" in k.lower() and not isinstance(r[k], (list, dict))})
        columns = [k for k in SHOWN if any(k in r for r in arm["curve"])] + extra
        lines += ["", f"## {arm['name']}: validation curve ({arm['curve_source']})", "",
                  "| " + " | ".join(columns) + " |", "|" + " ---: |" * len(columns)]
        lines += ["| " + " | ".join(_cell(r.get(k)) for k in columns) + " |" for r in arm["curve"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser, cache_dir="cache")
    parser.add_argument("--out-dir", required=True, help="a new folder: runs, sweep.json, sweep.md, sweep.log")
    parser.add_argument("--arms", default="gpu/gpu_sweep_arms.txt")
    parser.add_argument("--time-budget", type=float, default=500, help="seconds for stage 1 and every arm together")
    parser.add_argument("--min-arm-seconds", type=float, default=20, help="an arm with less time left is skipped")
    add_pipeline_arguments(parser, parallel_help="arms trained at a time on the device",
                           decoder_gin_help="binding for every arm, after the arm's own")
    args = parser.parse_args(argv)
    check_pipeline_arguments(args, files=("rqvae_config", "decoder_config", "arms"))
    result = run_sweep(args)
    print(markdown(result), end="")
    return result


if __name__ == "__main__":
    main()
