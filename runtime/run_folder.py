"""Where a run's files live: <save_dir>/<dataset>-<split>/, and stage 1's tokenizer in it; one run at a
time writes a run folder."""
from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from typing import TextIO

from runtime.errors import CheckpointError, ConfigError, MissingFileError


def run_dir(save_dir: str, dataset: str, split: str) -> Path:
    return Path(save_dir) / f"{dataset}-{split}"


def tokenizer_path(tokenizer_dir: str, dataset: str, split: str) -> Path:
    return run_dir(tokenizer_dir, dataset, split) / "semantic_ids.pt"


def existing_tokenizer_path(tokenizer_dir: str, dataset: str, split: str) -> Path:
    """Stage 1's semantic_ids.pt for the data set (load it with SemanticIdTokenizer.load); a missing
    file names the path and the binding."""
    path = tokenizer_path(tokenizer_dir, dataset, split)
    if not path.is_file():
        raise MissingFileError(f"no tokenizer at {path} (train.tokenizer_dir={tokenizer_dir!r}): "
                               "run train_rqvae.py first, or point train.tokenizer_dir at its save_dir")
    return path


# Run folders this process holds (claim_run_folder), released by release_run_folders when train() returns
# or fails (runtime/gin_cli.py's run_entry_point), or by the OS when the process dies.
_HELD: dict[Path, TextIO] = {}


def claim_run_folder(out_dir: Path, binding: str = "save_dir") -> None:
    """Create `out_dir` if needed and hold an exclusive lock on <out_dir>/.lock until the run ends: a second
    run started into the same folder is refused with one line naming the first, and a folder that cannot be
    written fails here, before any training. An flock: a run killed with SIGKILL leaves no stale lock (only
    an unlocked file). A finished run removes the file, so a run folder ends as it would without it."""
    out_dir = Path(out_dir)
    if out_dir in _HELD:
        return
    path = out_dir / ".lock"
    while True:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            lock = open(path, "a+")
        except OSError as e:
            raise ConfigError(f"cannot write the run folder {out_dir} ({e.strerror or e}): choose another "
                              f"train.{binding}", binding=binding) from e
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "a process"
            lock.close()
            raise CheckpointError(f"{out_dir} is being written by another run ({holder}): let it finish, stop "
                                  f"it, or choose another train.{binding}") from None
        try:  # the file we locked is still the one at `path` (a finishing run removes its file): else again
            if os.stat(path).st_ino == os.fstat(lock.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        lock.close()
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    lock.flush()
    _HELD[out_dir] = lock


def release_run_folders() -> None:
    """Release every run folder this process claimed, removing its lock file (before unlocking: a run that
    opened the old file meanwhile sees it is gone and takes a new one)."""
    while _HELD:
        out_dir, lock = _HELD.popitem()
        (out_dir / ".lock").unlink(missing_ok=True)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
