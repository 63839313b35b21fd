"""A self-contained model folder: everything `Recommender` needs, read without the raw data, the caches or
the training run folders, and without running anything from the folder (weights through
torch.load(weights_only=True), which builds tensors only, as the successor table; everything else is JSON).

    manifest.json    format name and version, the writer's versions, the SHA-256 of every other file,
                     the serving settings and where the model came from
    weights.pt       the retrieval model's state dict (the one best.pt holds)
    semantic_ids.pt  stage 1's item -> semantic ID table (modules/tokenizer.py's file)
    catalogue.json   the data set's own item ids and titles, in the model's item order
    users.json       the data set's own user ids, in the model's user order (what the hashed user token reads)
    config.json      the decoder run's resolved bindings and the model's constructor arguments
    successors.pt    the search's transition prior (train.eval_transition_prior > 0): what followed each item
                     among the training examples and how often, items and counts [n_items, k]; else None

Reading checks the format version first (a folder of another version is refused in one line: the layout
or the meaning of a file may have changed), then every file against its SHA-256 (a copied-over, truncated
or edited file is refused, named), then that the pieces fit each other.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modules.tokenizer import SemanticIdTokenizer
from runtime.atomic_io import atomic_torch_save
from runtime.checkpointing import file_sha256
from runtime.errors import CheckpointError, ConfigError, MissingFileError

FORMAT = "tiger-model-folder"
# Raise it whenever a file's layout or meaning changes: a reader refuses every version but its own.
FORMAT_VERSION = 2  # 2: successors.pt
MANIFEST = "manifest.json"
FILES = ("weights.pt", "semantic_ids.pt", "catalogue.json", "users.json", "config.json", "successors.pt")
EXPORT_HINT = "export it again with this version: python recommend.py RUN_FOLDER --export FOLDER"


@dataclass
class ModelFolder:
    """What a model folder holds, read and checked."""
    state_dict: dict[str, torch.Tensor]
    model_kwargs: dict[str, Any]    # EncoderDecoderRetrievalModel's constructor arguments
    tokenizer: SemanticIdTokenizer  # sem_ids [n_items, T]
    item_ids: list[str]             # [n_items] the data set's own ids
    titles: list[str]               # [n_items]
    user_ids: list[str]             # [n_users] the data set's own ids
    config: dict[str, Any]          # the decoder run's bindings (values)
    settings: dict[str, Any]        # how it answers: max_seq_len, precision, protocol, beam_width, batch_size
    source: dict[str, Any]          # where it came from: checkpoint, step, validation metrics, dataset, split
    successors: tuple[torch.Tensor, torch.Tensor] | None = None  # the transition prior's items, counts [n_items, k]


def code_commit() -> str | None:
    """The git commit of the code writing the folder, when it runs from a checkout (for the record only)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=10)
        return (out.stdout.strip() or None) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def write_model_folder(folder: str | os.PathLike, parts: ModelFolder) -> Path:
    """Write `parts` as a model folder at `folder`, which must not exist yet (or be empty). The files are
    written into a temporary folder beside it that is renamed at the end: an interrupted export leaves
    no half-written model folder behind."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"{folder} already exists and is not empty: export into a new folder (nothing was written)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        atomic_torch_save({k: v.detach().cpu() for k, v in parts.state_dict.items()}, tmp / "weights.pt")
        parts.tokenizer.save(tmp / "semantic_ids.pt")
        write_json(tmp / "catalogue.json", {"item_ids": parts.item_ids, "titles": parts.titles})
        write_json(tmp / "users.json", {"user_ids": parts.user_ids})
        write_json(tmp / "config.json", {"bindings": parts.config, "model_kwargs": parts.model_kwargs})
        atomic_torch_save({"successors": None if parts.successors is None else
                           [t.detach().cpu().to(torch.int32) for t in parts.successors]}, tmp / "successors.pt")
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "versions": {"format": FORMAT_VERSION, "python": platform.python_version(), "torch": torch.__version__,
                         "code_commit": code_commit()},
            "files": {name: file_sha256(tmp / name) for name in FILES},
            "settings": parts.settings, "source": parts.source,
            "n_items": len(parts.item_ids), "n_users": len(parts.user_ids),
        }
        write_json(tmp / MANIFEST, manifest, indent=1)
        if folder.exists():
            folder.rmdir()  # empty (checked above)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def write_json(path: Path, value: Any, indent: int | None = None) -> None:
    path.write_text(json.dumps(value, indent=indent, ensure_ascii=False), encoding="utf-8")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}): the model folder is damaged") from None


def is_model_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_model_folder(folder: str | os.PathLike) -> ModelFolder:
    """Read and check a folder written by `write_model_folder`; anything wrong is one CheckpointError line."""
    folder = Path(folder)
    if not is_model_folder(folder):
        raise MissingFileError(f"{folder} is not a model folder: no {MANIFEST} (write one with python recommend.py "
                               "RUN_FOLDER --export FOLDER)")
    manifest = read_json(folder / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{folder / MANIFEST} does not describe a {FORMAT} (format {manifest.get('format')!r})"
                              if isinstance(manifest, dict) else f"{folder / MANIFEST} is not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{folder} was written in model-folder format version {manifest.get('format_version')!r}; "
                              f"this code reads version {FORMAT_VERSION} only: {EXPORT_HINT}")
    recorded = manifest.get("files", {})
    for name in FILES:  # only these names are ever opened: the manifest cannot point outside the folder
        path = folder / name
        if name not in recorded or not path.is_file():
            raise CheckpointError(f"{folder} lacks {name} (or its checksum in {MANIFEST}): the model folder is incomplete")
        if file_sha256(path) != recorded[name]:
            raise CheckpointError(f"{path} does not match the SHA-256 in {folder / MANIFEST}: the file was changed or "
                                  "damaged after export; not loaded")
    try:
        state_dict = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # a checksum that matches a bad file: written so by hand
        raise CheckpointError(f"{folder / 'weights.pt'} cannot be read ({type(e).__name__}: {e})") from e
    tokenizer = SemanticIdTokenizer.load(folder / "semantic_ids.pt")
    try:
        successors = torch.load(folder / "successors.pt", map_location="cpu", weights_only=True)["successors"]
    except Exception as e:  # as weights.pt: a checksum that matches a bad file
        raise CheckpointError(f"{folder / 'successors.pt'} cannot be read ({type(e).__name__}: {e})") from e
    catalogue, users, config = (read_json(folder / name) for name in ("catalogue.json", "users.json", "config.json"))
    parts = ModelFolder(state_dict=state_dict, model_kwargs=config["model_kwargs"], tokenizer=tokenizer,
                        item_ids=catalogue["item_ids"], titles=catalogue["titles"], user_ids=users["user_ids"],
                        config=config["bindings"], settings=manifest["settings"], source=manifest["source"],
                        successors=None if successors is None else tuple(t.long() for t in successors))
    if not len(parts.item_ids) == len(parts.titles) == tokenizer.n_items:
        raise CheckpointError(f"{folder}: catalogue.json lists {len(parts.item_ids):,} items, semantic_ids.pt "
                              f"{tokenizer.n_items:,}: the files come from different exports")
    return parts
