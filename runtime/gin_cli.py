"""Command line of the entry points: `script.py CONFIG.gin [--gin 'binding' ...] [--debug]`.

- Arguments: an unknown argument is refused with the --gin form it probably meant (a plain
  `--iterations 30` used to be dropped silently); a missing config file is "no such file".
- Bindings: gin names an unknown binding but does not check types, so a string bound where an
  int is expected would fail deep inside training; `check_binding_types` checks every binding
  of the entry point's `train()` against its type hints. Every binding error names the config
  file or the --gin flag that set the binding.
- Errors: on the command line a UserError (runtime/errors.py: bad binding, missing file, bad
  data, refused resume, damaged checkpoint or cache) prints as one or two lines on stderr and
  exits with status 2, no traceback; `--debug` or TIGER_DEBUG=1 lets it propagate. Called from
  Python (`main(argv)` in tests and benchmarks) the exception always propagates.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import inspect
import json
import os
import re
import signal
import sys
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import gin

from runtime import preemption
from runtime.errors import DEBUG_ENV, ConfigError, MissingFileError, exit_on_user_error, message_of
from runtime.run_folder import release_run_folders

# What --help lists under "most used bindings" (those the entry point's train() has).
MOST_USED_BINDINGS = {
    "dataset_folder": 'data root: raw files in <dataset_folder>/raw/<split>/ (e.g. "../shared/data/amazon")',
    "split": '"beauty", "sports" or "toys" (Amazon); MovieLens: the data set\'s name',
    "cache_dir": "processed tables and item embeddings: <cache_dir>/<dataset>/<split>/",
    "tokenizer_dir": "stage 1's save_dir: reads <tokenizer_dir>/<dataset>-<split>/semantic_ids.pt",
    "save_dir": "the run folder is <save_dir>/<dataset>-<split>/",
    "iterations": "training steps (may be raised on resume)",
    "batch_size": "global batch size",
    "micro_batch_size": "examples per forward/backward, per process (None: the whole batch; less memory, same step)",
    "optimizer": '"adamw" or "adafactor" (decoder), "adamw" or "adagrad" (RQ-VAE)',
    "learning_rate": "peak learning rate",
    "eval_every": "steps between evaluations (may change on resume)",
    "eval_batch_size": "users per beam-search chunk",
    "device": '"auto" (CUDA when available), "cpu" or "cuda"',
    "num_threads": "CPU threads per process (None: torch's default)",
    "precision": '"auto" (bf16 autocast on CUDA, fp32 on the CPU), "bf16" or "fp32"',
    "resume": "False: start over instead of continuing from checkpoint.pt",
    "use_wandb": "log to Weights & Biases (WANDB_MODE=offline keeps the logs local)",
}


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:  # an int literal is a fine float: `lr = 1` means 1.0
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple, typing.Sequence):
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a hint we cannot check (Literal, callables, ...)


def binding_source(name: str, config: str, flags: Sequence[str]) -> str:
    """Where `train.<name>` was set: the last --gin flag that binds it, else the config file."""
    for flag in reversed(flags):
        for line in flag.splitlines():
            if "=" in line and line.split("=", 1)[0].strip().rsplit(".", 1)[-1] == name:
                return f"set by --gin {flag!r}"
    return f"set in {config}"


def check_binding_types(fn: Callable, config: str = "the config", flags: Sequence[str] = ()) -> None:
    """Raise ConfigError for a binding of `fn` whose value does not fit its type hint."""
    hints = typing.get_type_hints(inspect.unwrap(fn))
    name = _configurable(fn).name
    for param, value in gin.get_bindings(fn).items():
        hint = hints.get(param)
        if hint is not None and not _matches(value, hint):
            raise ConfigError(
                f"gin binding {name}.{param} = {value!r} has type {type(value).__name__}, expected "
                f"{getattr(hint, '__name__', hint)} ({binding_source(param, config, flags)})", binding=param)


def check_positive(**values: Any) -> None:
    """Each value (each element of a tuple) must be > 0; None passes (an optional setting left unset).
    Called at the top of an entry point's train(), so a bad size, count or rate stops before any work."""
    for name, value in values.items():
        elements = value if isinstance(value, (tuple, list)) else (value,)
        if value is not None and not all(x > 0 for x in elements):  # `not x > 0` refuses NaN too
            raise ConfigError(f"train.{name} = {value!r}: must be positive", binding=name)


def check_non_negative(**values: Any) -> None:
    for name, value in values.items():
        if value is not None and not value >= 0:
            raise ConfigError(f"train.{name} = {value!r}: must be >= 0", binding=name)


def check_choice(**values: tuple[Any, Sequence[Any]]) -> None:
    """name=(value, allowed values): the value must be one of them."""
    for name, (value, allowed) in values.items():
        if value not in allowed:
            raise ConfigError(f"train.{name} = {value!r}: expected one of {', '.join(map(repr, allowed))}", binding=name)


def train_parameters(fn: Callable) -> list[str]:
    """The parameter names of an entry point's train() (none for a stand-in taking **bindings)."""
    return [name for name, p in inspect.signature(inspect.unwrap(fn)).parameters.items()
            if p.kind is not inspect.Parameter.VAR_KEYWORD]


def train_defaults(fn: Callable) -> dict[str, Any]:
    """The code defaults of an entry point's train(): the value an argument takes when nothing binds it."""
    return {name: p.default for name, p in inspect.signature(inspect.unwrap(fn)).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _configurable(fn: Callable) -> gin.config.Configurable:
    return next(c for _, c in gin.config._REGISTRY.items() if c.wrapper is fn)


@contextlib.contextmanager
def _sole_configurable_named_like(fn: Callable) -> Iterator[None]:
    """Hide other configurables with `fn`'s name while parsing.

    Both training scripts (and evaluate.py's stand-in) register a configurable called `train`, so
    that gin files read `train.batch_size = ...`. In one process that has imported several (tests,
    the time-to-quality benchmark) the bare `train` would be ambiguous; while a config for `fn` is
    parsed, `train` can only mean `fn`. Uses gin's registry, which has no public API for this.
    """
    registry = gin.config._REGISTRY
    name = _configurable(fn).name
    hidden = {sel: registry.pop(sel) for sel in list(registry.matching_selectors(name))
              if registry.get(sel).wrapper is not fn}
    try:
        yield
    finally:
        for sel, configurable in hidden.items():
            registry[sel] = configurable


def _gin_error(e: Exception, known: Sequence[str]) -> str:
    """gin's message in one line: its first line, the file's line number, a close parameter name."""
    lines = str(e).splitlines() or [type(e).__name__]
    text = lines[0]
    line_no = next((m.group(1) for m in map(re.compile(r'In file ".*", line (\d+)').search, lines) if m), None)
    if line_no:
        text = f"line {line_no}: {text}"
    unknown = re.search(r"parameter named '(\w+)'", text)
    close = difflib.get_close_matches(unknown.group(1), known, n=1) if unknown else []
    return text + (f" (did you mean train.{close[0]}?)" if close else "")


def load_gin_config(fn: Callable, config: str, flags: Sequence[str]) -> None:
    """Parse the config file, then each --gin flag; an error names the one that caused it."""
    if not Path(config).is_file():
        raise MissingFileError(f"no such file: {config} (the config file argument; the project's configs are in configs/)")
    known = train_parameters(fn)
    # OSError: an `include` that names no file; TypeError: gin's package reader given a folder that is no package
    parse_errors = (ValueError, KeyError, SyntaxError, ImportError, OSError, TypeError)
    with _sole_configurable_named_like(fn):
        try:
            gin.parse_config_file(config)
        except parse_errors as e:
            raise ConfigError(f"{config}, {_gin_error(e, known)}") from e
        for flag in flags:
            try:
                gin.parse_config(flag)
            except parse_errors as e:
                raise ConfigError(f"--gin {flag!r}: {_gin_error(e, known)}") from e
    gin.finalize()


def _unknown_arguments(extra: Sequence[str]) -> str:
    """`--iterations 30` -> a message suggesting --gin 'train.iterations=30'."""
    suggestions = []
    for i, arg in enumerate(extra):
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            if not value and i + 1 < len(extra) and not extra[i + 1].startswith("-"):
                value = extra[i + 1]
            suggestions.append(f"--gin 'train.{name.replace('-', '_')}={value or '...'}'")
    hint = f"; bindings are set with --gin, e.g. {' '.join(suggestions)}" if suggestions else ""
    return f"unrecognized argument(s): {' '.join(extra)}{hint} (see --help)"


def entry_point_parser(description: str, bindings: Iterable[str] = ()) -> argparse.ArgumentParser:
    """The entry points' parser: the docstring as written, the config, --gin, --debug, and an
    epilog listing the most used of `bindings`. evaluate.py adds its own options to it."""
    bindings = set(bindings)
    width = max((len(name) for name in MOST_USED_BINDINGS if name in bindings), default=0)
    listed = [f"  train.{name:<{width}}  {text}" for name, text in MOST_USED_BINDINGS.items() if name in bindings]
    epilog = ("most used bindings (every one is in the config file; set any with --gin 'train.NAME=VALUE'):\n"
              + "\n".join(listed) + "\n\n" if listed else "")
    epilog += (f"A bad binding, missing file or damaged checkpoint prints one or two lines and exits with "
               f"status 2;\n--debug or {DEBUG_ENV}=1 shows the traceback.")
    parser = argparse.ArgumentParser(description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="gin config file (configs/*.gin)")
    parser.add_argument("--gin", action="append", default=[], metavar="BINDING",
                        help="extra gin binding, e.g. --gin 'train.iterations=1000' (repeatable; later ones win)")
    parser.add_argument("--debug", action="store_true", help=f"show the traceback of an error (or set {DEBUG_ENV}=1)")
    return parser


def parse_gin_args(fn: Callable, argv: Sequence[str] | None = None, description: str = "",
                   parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parse `CONFIG.gin [--gin BINDING ...]` (with `parser`, its options too), load them into gin
    and type-check `fn`'s bindings."""
    parser = parser or entry_point_parser(description, train_parameters(fn))
    args, extra = parser.parse_known_args(argv)
    if extra:
        raise ConfigError(_unknown_arguments(extra))
    load_gin_config(fn, args.config, args.gin)
    check_binding_types(fn, args.config, args.gin)
    return args


def run_entry_point(train_fn: Callable, argv: Sequence[str] | None = None, description: str = "") -> dict:
    """`main()` of a training script: fresh gin config, parse, train, one JSON line (rank 0 only).
    argv=None reads the command line, where user errors exit with status 2 (`exit_on_user_error`)."""
    import torch.distributed

    command_line = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    with exit_on_user_error(command_line, argv):
        gin.clear_config()  # a fresh config per call (tests and notebooks call main() repeatedly)
        args = parse_gin_args(train_fn, argv, description=description)
        finished = False
        try:
            with preemption.installed():  # SIGTERM / Ctrl-C: train() checkpoints the step it reached and returns
                result = train_fn()
            finished = True
        except ConfigError as e:  # a value checked inside train(): say where it was set
            if e.binding is None:
                raise
            raise ConfigError(f"{message_of(e)} ({binding_source(e.binding, args.config, args.gin)})", e.binding) from e
        finally:
            release_run_folders()
            if torch.distributed.is_initialized():
                if finished:  # every rank arrives before any tears down (runtime.distributed.cleanup says why)
                    torch.distributed.barrier()
                torch.distributed.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:  # one JSON line per run, not per process
        print(json.dumps(result))
    # a scheduler reads the exit status: a stopped run is not "completed"
    status = 128 + int(signal.Signals[result["stopped_by"]]) if result.get("stopped_by") else 0
    if command_line and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A torchrun worker whose run is done and written leaves without interpreter finalisation: there gloo's
        # threads can still release tensors, take the GIL of a dying interpreter and abort the process (SIGABRT,
        # "terminate called without an active exception": one CI run; pytorch/pytorch PR 179291).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    if command_line and status:
        raise SystemExit(status)
    return result
