"""The errors a user can fix: a bad binding or argument, a missing or inconsistent file, a refused
resume, a damaged checkpoint, cache or model folder, a request with an unknown id.

The entry points print these as one or two lines on stderr and exit with status 2, without a
traceback (`exit_on_user_error` below; `--debug` or TIGER_DEBUG=1 shows it).
Any other exception is a bug and keeps its traceback. Each class also derives from the built-in
error it refines, so `except ValueError` (or FileNotFoundError, ...) still catches it.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator, Sequence

DEBUG_ENV = "TIGER_DEBUG"


class UserError(Exception):
    """Input the user can correct; the message says what is wrong and what to do."""


class ConfigError(UserError, ValueError):
    """A gin binding, command-line argument or config file that cannot be used. `binding` names the
    `train()` parameter when there is one, so the message can say which file or --gin flag set it."""

    def __init__(self, message: str, binding: str | None = None) -> None:
        super().__init__(message)
        self.binding = binding


class DataError(UserError, ValueError):
    """Raw data that is unreadable or inconsistent; the message names the file (and line)."""


class MissingFileError(UserError, FileNotFoundError):
    """A file the run needs is not there: raw data, a config, stage 1's tokenizer, a checkpoint."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be used: damaged, from another run, or a resume that was refused."""


class CacheError(UserError, RuntimeError):
    """A cache file that cannot be trusted: it is never used, the message names it."""


class RequestError(UserError, ValueError):
    """A question a trained model cannot answer as asked (serving/): an item or user id the data set does
    not have, an empty history, a k the catalogue cannot fill; the message names each offending value."""


def message_of(e: BaseException) -> str:
    """The error's own message: gin appends "\n  In call to configurable 'train' (...)" to every
    exception raised inside a configurable, which tells a user nothing."""
    return str(e).split("\n  In call to configurable")[0]


def debug_requested(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


@contextlib.contextmanager
def exit_on_user_error(command_line: bool, argv: Sequence[str]) -> Iterator[None]:
    """On the command line, a UserError becomes `error: <message>` on stderr (rank 0 only) and exit
    status 2, without a traceback. With --debug in `argv`, TIGER_DEBUG=1, or when called from Python
    (`command_line` False: tests, benchmarks), it propagates."""
    if not command_line or debug_requested(argv):
        yield
        return
    try:
        yield
    except UserError as e:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"error: {message_of(e)}", file=sys.stderr)
        raise SystemExit(2) from None
