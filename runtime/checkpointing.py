"""Crash-safe training checkpoints.

A checkpoint is one `torch.save` file written atomically (temporary file, then
rename) plus a small JSON manifest beside it (`checkpoint.pt` -> `checkpoint.json`)
with the step, the gin bindings of the run, their hash, the metrics and the
file's SHA-256. `kill -9` at any moment leaves the previous checkpoint or the new
one, never a torn file; a damaged file is detected and refused, not loaded; a
resume with different bindings is refused with the bindings named.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import gin
import numpy as np
import torch

from runtime.atomic_io import atomic_torch_save, atomic_write_text
from runtime.errors import CheckpointError, ConfigError
from runtime.gin_cli import train_defaults


def gin_bindings(fn: Callable) -> dict[str, str]:
    """The run's configuration: the gin bindings of an entry point's `train()`, as strings."""
    return {k: repr(v) for k, v in sorted(gin.get_bindings(fn).items())}


def gin_defaults(fn: Callable) -> dict[str, str]:
    """The code defaults of `train()`'s arguments, as strings like gin_bindings': what an unbound argument took."""
    return {k: repr(v) for k, v in train_defaults(fn).items()}


def recorded_bindings(manifest: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint manifest's bindings as values: each was recorded as the repr of a literal (gin_bindings);
    one that is not a literal stays the text it was recorded as."""
    import ast

    values = {}
    for name, text in manifest["bindings"].items():
        try:
            values[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            values[name] = text
    return values


def config_hash(bindings: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(bindings, sort_keys=True).encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_tokenizer_items(tokenizer_file: Path, tokenizer_items: int, data_items: int, data_name: str) -> None:
    """Refuse stage 1's semantic IDs for a catalogue of another size than `data_name`'s (another data set)."""
    if tokenizer_items != data_items:
        raise ConfigError(f"{tokenizer_file} holds semantic IDs for {tokenizer_items:,} items but {data_name} has "
                          f"{data_items:,}: the tokenizer belongs to another data set", binding="tokenizer_dir")


def check_trained_with(checkpoint: Path, state: dict, tokenizer_file: Path, tokenizer_items: int, data_items: int,
                       data_name: str) -> None:
    """Refuse, in one line and before any evaluation, a decoder checkpoint read with semantic IDs or a catalogue
    other than its own: stage 1 rerun since (the tokenizer's SHA-256, recorded at training, differs) or a
    tokenizer of another data set (its item count differs from `data_items`, the catalogue of `data_name`).
    Checkpoints written before the hash was recorded are checked on the item count alone."""
    check_tokenizer_items(tokenizer_file, tokenizer_items, data_items, data_name)
    recorded = state.get("tokenizer_sha256")
    if recorded is not None and recorded != file_sha256(tokenizer_file):
        raise CheckpointError(f"{checkpoint} was trained with other semantic IDs than {tokenizer_file} (its SHA-256 "
                              "differs: stage 1 was rerun since): retrain the decoder, or point train.tokenizer_dir "
                              "at the stage 1 it was trained with")


def manifest_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def seed_all(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python's `random`: every generator whose state a checkpoint keeps."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def rng_state() -> dict[str, Any]:
    """torch, CUDA, numpy and Python RNG states in types `torch.load(weights_only=True)` accepts."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": repr(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import ast

    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate(ast.literal_eval(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | os.PathLike,
    state: dict[str, Any],
    *,
    step: int,
    bindings: dict[str, str],
    metrics: dict[str, float] | None = None,
) -> Path:
    """Write `state` (plus its manifest) atomically to `path`, then the JSON manifest beside it."""
    path = Path(path)
    manifest = {
        "step": int(step),
        "config_hash": config_hash(bindings),
        "bindings": dict(bindings),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "time": time.time(),
    }
    atomic_torch_save({**state, "manifest": manifest}, path)
    atomic_write_text(json.dumps({**manifest, "sha256": file_sha256(path)}, indent=1), manifest_path(path))
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint`; a truncated or damaged file raises CheckpointError."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, wrong format: all mean "do not trust it"
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupted and was not loaded ({type(e).__name__}: {e}). "
            "Move it away to start over, or restore it from a copy."
        ) from e
    if not isinstance(state, dict) or "manifest" not in state:
        raise CheckpointError(f"{path} is not a checkpoint of this project (no manifest)")
    side = manifest_path(path)
    if side.exists():
        try:
            recorded = json.loads(side.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"checkpoint manifest {side} is corrupted: {e}") from e
        # A manifest for another step only means a crash fell between the two renames;
        # for the same step the bytes must be the ones that were written.
        if recorded.get("step") == state["manifest"]["step"] and recorded.get("sha256") != file_sha256(path):
            raise CheckpointError(f"checkpoint {path} does not match the SHA-256 in {side}: the file is corrupted")
    return state


def check_resume_config(
    manifest: dict[str, Any],
    bindings: dict[str, str],
    *,
    path: str | os.PathLike,
    force: bool = False,
    ignore: Iterable[str] = (),
    defaults: dict[str, str] | None = None,
    retired: dict[str, str] | None = None,
) -> None:
    """Refuse to resume a run whose bindings differ from the checkpoint's, naming each difference.
    `defaults` (gin_defaults): a binding one side lacks counts as the code default it ran with, so a
    binding added to the configs after the run was written, at its default, is no difference.
    `retired`: bindings this version no longer has, each with the value that did what the code now
    always does; a run recorded with that value resumes, one recorded with another is refused."""
    ignore, defaults, retired = set(ignore), defaults or {}, retired or {}
    old = {k: v for k, v in manifest.get("bindings", {}).items() if retired.get(k) != v}
    differing = sorted(k for k in set(old) | set(bindings)
                       if k not in ignore and old.get(k, defaults.get(k)) != bindings.get(k, defaults.get(k)))
    if differing and not force:
        details = "; ".join(f"train.{k}: {old.get(k, '<default>')} -> "
                            f"{'<no longer exists>' if k in retired else bindings.get(k, '<default>')}" for k in differing)
        raise CheckpointError(
            f"refusing to resume from {path}: the config differs from the one it was written with ({details}). "
            "Bind train.force_resume=True to resume anyway, or choose another save_dir."
        )
