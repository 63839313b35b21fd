"""Command line of the entry points: `script.py CONFIG.gin [--gin 'binding' ...]`.

gin already names an unknown binding; what it does not do is check types, so a
string bound where an int is expected would fail deep inside training (or, worse,
silently change behaviour). `parse_gin_args` checks every binding of the entry
point's `train()` against its type hints and stops with the parameter's name.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import typing
from typing import Any, Callable, Sequence

import gin


class GinConfigError(ValueError):
    pass


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


def check_binding_types(fn: Callable) -> None:
    """Raise GinConfigError for a binding of `fn` whose value does not fit its type hint."""
    hints = typing.get_type_hints(inspect.unwrap(fn))
    name = getattr(inspect.unwrap(fn), "__name__", str(fn))
    for param, value in gin.get_bindings(fn).items():
        hint = hints.get(param)
        if hint is not None and not _matches(value, hint):
            raise GinConfigError(
                f"gin binding {name}.{param} = {value!r} has type {type(value).__name__}, "
                f"expected {getattr(hint, '__name__', hint)}"
            )


@contextlib.contextmanager
def _sole_configurable_named_like(fn: Callable):
    """Hide other configurables with `fn`'s name while parsing.

    Both entry points register a configurable called `train`, so that gin files read
    `train.batch_size = ...`. In one process that has imported both (tests, the
    time-to-quality benchmark) the bare `train` would be ambiguous; while a config for
    `fn` is parsed, `train` can only mean `fn`. Uses gin's registry, which has no public
    API for this.
    """
    registry = gin.config._REGISTRY
    name = inspect.unwrap(fn).__name__
    hidden = {sel: registry.pop(sel) for sel in list(registry.matching_selectors(name))
              if registry.get(sel).wrapper is not fn}
    try:
        yield
    finally:
        for sel, configurable in hidden.items():
            registry[sel] = configurable


def parse_gin_args(fn: Callable, argv: Sequence[str] | None = None, description: str = "") -> argparse.Namespace:
    """Parse `CONFIG.gin [--gin BINDING ...]`, load them into gin and type-check `fn`'s bindings."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("config", help="gin config file, e.g. configs/rqvae_amazon.gin")
    parser.add_argument("--gin", action="append", default=[], metavar="BINDING",
                        help="extra gin binding, e.g. --gin 'train.iterations=1000' (repeatable)")
    args, extra = parser.parse_known_args(argv)
    args.extra = extra
    try:
        with _sole_configurable_named_like(fn):
            gin.parse_config_files_and_bindings([args.config], args.gin)
    except (ValueError, KeyError, SyntaxError) as e:
        raise GinConfigError(f"{args.config}: {e}") from e
    except OSError as e:
        raise GinConfigError(f"cannot read gin config {args.config}: {e}") from e
    check_binding_types(fn)
    return args


def run_entry_point(train_fn: Callable, argv: Sequence[str] | None = None, description: str = "") -> dict:
    """`main()` of an entry point: fresh gin config, parse, train, one JSON line (rank 0 only)."""
    import torch.distributed

    gin.clear_config()  # a fresh config per call (tests and notebooks call main() repeatedly)
    parse_gin_args(train_fn, argv, description=description)
    try:
        result = train_fn()
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:  # one JSON line per run, not per process
        print(json.dumps(result))
    return result
