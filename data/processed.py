"""The data sets the training scripts read: item features and leave-one-out sequences.

Raw files are read once per (dataset, split) and cached under
`<cache_dir>/<dataset>/<split>/` (never under the read-only raw root):
  interactions.parquet   user, item: every interaction, grouped by user, oldest first
  items.pt               counts, titles, texts, extra (genre) features, the data set's own item and user ids
  item_embeddings_*.pt   sentence embeddings (see data/item_embeddings.py)
Every file is written to a temporary name and renamed; `force_process` rebuilds.
MovieLens has a single split: `split` is ignored there (its cache folder is named
after the data set). For a custom data set (data/custom.py) `split` names it: its cache folder
is `<cache_dir>/custom/<split>/`, rebuilt whenever its input files change.
"""
from __future__ import annotations

import enum
import hashlib
import json
import sys
from pathlib import Path

import polars as pl
import torch
from torch.utils.data import Dataset

from data.amazon import load_amazon
from data.cache_files import REBUILD_ADVICE, load_cache_file
from data.collaborative import collaborative_vectors
from data.custom import load_custom, source_fingerprint
from data.item_embeddings import cached_item_embeddings
from data.item_text import TEXT_TEMPLATE
from data.ml1m import load_ml1m
from data.ml32m import load_ml32m
from data.raw_data import RawData
from data.splits import SUBSETS, gather_histories, leave_one_out
from runtime.atomic_io import atomic_torch_save, atomic_write
from runtime.checkpointing import file_sha256
from runtime.errors import CacheError, ConfigError

# 2: items.pt also holds the data set's own item and user ids (RawData.item_ids, user_ids), and the SHA-256 of its
# own content. A cache of another version is rebuilt from the raw files (with a note), never read with a field missing.
CACHE_VERSION = 2
RAW_LOADS = 0  # how many times raw files were parsed (tests assert on it)


class RecDataset(str, enum.Enum):
    AMAZON = "amazon"
    ML_1M = "ml-1m"
    ML_32M = "ml-32m"
    CUSTOM = "custom"


def default_max_seq_len(dataset: RecDataset) -> int:
    return 20 if dataset == RecDataset.AMAZON else 200


def as_dataset(dataset: RecDataset | str) -> RecDataset:
    try:
        return RecDataset(dataset)
    except ValueError:
        raise ConfigError(f"train.dataset = {dataset!r}: expected one of {[d.value for d in RecDataset]}",
                          binding="dataset") from None


def cache_folder(cache_dir: str | Path, dataset: RecDataset, split: str) -> Path:
    return Path(cache_dir) / dataset.value / (split if dataset in (RecDataset.AMAZON, RecDataset.CUSTOM) else dataset.value)


def load_raw(root: str | Path, dataset: RecDataset, split: str) -> RawData:
    global RAW_LOADS
    RAW_LOADS += 1
    if dataset == RecDataset.AMAZON:
        return load_amazon(root, split)
    if dataset == RecDataset.CUSTOM:
        return load_custom(root)
    return load_ml1m(root) if dataset == RecDataset.ML_1M else load_ml32m(root)


def load_processed(root: str | Path, dataset: RecDataset, split: str, cache_dir: str | Path,
                   force_process: bool = False) -> RawData:
    """The parsed data set, from the cache when it is there, else from the raw files."""
    folder = cache_folder(cache_dir, dataset, split)
    table_path, items_path = folder / "interactions.parquet", folder / "items.pt"
    source = source_fingerprint(root) if dataset == RecDataset.CUSTOM else None  # your files may change
    if not force_process and table_path.is_file() and items_path.is_file():
        items = load_cache_file(items_path)
        if items.get("version") != CACHE_VERSION:
            print(f"note: {folder} was written by cache version {items.get('version')}, this code reads version "
                  f"{CACHE_VERSION}: rebuilding it from the raw files", file=sys.stderr)
        elif items.get("source") == source:
            if items_sha256(items) != items.get("sha256"):  # a flipped bit inside a title or an id still unpickles
                raise CacheError(f"cache file {items_path} does not match the SHA-256 of its content: it is corrupted; "
                                 f"{REBUILD_ADVICE}")
            # the table's SHA-256 is recorded beside it: a damaged parquet is refused, not half-read
            if "interactions_sha256" in items and file_sha256(table_path) != items["interactions_sha256"]:
                raise CacheError(f"cache file {table_path} does not match the SHA-256 recorded in {items_path}: "
                                 f"it is corrupted; {REBUILD_ADVICE}")
            try:
                table = pl.read_parquet(table_path)
            except Exception as e:
                raise CacheError(f"cache file {table_path} is unreadable ({type(e).__name__}: {e}); {REBUILD_ADVICE}") from e
            return RawData(table, items["n_users"], items["n_items"], items["titles"], items["texts"],
                           items["extra_features"], items["item_ids"], items["user_ids"])
    raw = load_raw(root, dataset, split)
    atomic_write(table_path, lambda tmp: raw.interactions.write_parquet(tmp))
    items = {"version": CACHE_VERSION, "n_users": raw.n_users, "n_items": raw.n_items,
             "titles": raw.titles, "texts": raw.texts, "extra_features": raw.extra_features,
             "item_ids": raw.item_ids, "user_ids": raw.user_ids,
             "interactions_sha256": file_sha256(table_path), "source": source}
    atomic_torch_save({**items, "sha256": items_sha256(items)}, items_path)
    return raw


def items_sha256(items: dict) -> str:
    """SHA-256 of items.pt's content, its own "sha256" left out: each field by name, tensors by shape and bytes,
    the rest as JSON."""
    h = hashlib.sha256()
    for key in sorted(k for k in items if k != "sha256"):
        value = items[key]
        if isinstance(value, torch.Tensor):
            h.update(f"{key} {value.dtype} {tuple(value.shape)}".encode())
            h.update(value.contiguous().numpy().tobytes())
        else:
            h.update(f"{key} {json.dumps(value)}".encode())
    return h.hexdigest()


class ItemData(Dataset):
    """Item feature vectors: the sentence embedding of the item text, followed by
    the extra features (MovieLens genres). `subset='eval'` is a fixed random
    `held_out_fraction` of the catalogue (the tokenizer's own held-out
    reconstruction loss), 'train' the rest, 'all' everything. `collaborative_dim` > 0 appends
    `collaborative_weight` x a unit collaborative vector per item (data/collaborative.py; not the paper's)."""

    def __init__(self, root: str, dataset: RecDataset | str = "amazon", split: str = "beauty",
                 subset: str = "all", held_out_fraction: float = 0.05, seed: int = 42,
                 cache_dir: str = "cache", encoder_model: str | None = None, force_process: bool = False,
                 collaborative_dim: int = 0, collaborative_weight: float = 1.0):
        if subset not in ("all", "train", "eval"):
            raise ValueError(f"subset='{subset}': expected 'all', 'train' or 'eval'")
        if not 0.0 <= held_out_fraction < 1.0:
            raise ValueError(f"held_out_fraction={held_out_fraction}: must be in [0, 1)")
        dataset = as_dataset(dataset)
        raw = load_processed(root, dataset, split, cache_dir, force_process)
        text_vectors = (torch.zeros(raw.n_items, 0) if raw.texts is None  # precomputed (custom): nothing to embed
                        else cached_item_embeddings(raw.texts, cache_folder(cache_dir, dataset, split),
                                                    encoder_model, TEXT_TEMPLATE, force=force_process))
        parts = [text_vectors, raw.extra_features.to(text_vectors.dtype)]
        if collaborative_dim >= raw.n_items:
            raise ConfigError(f"train.collaborative_dim = {collaborative_dim}: must be below the {raw.n_items:,} items of "
                              f"{dataset.value}/{split}", binding="collaborative_dim")
        if collaborative_dim > 0:  # from the training split only: no validation or test target leaks in
            users, items = (raw.interactions[c].to_numpy() for c in ("user", "item"))
            parts.append(collaborative_weight * collaborative_vectors(users, items, raw.n_items, collaborative_dim, seed=seed))
        features = torch.cat(parts, dim=1)  # [n_items, d]

        n_held_out = round(held_out_fraction * raw.n_items)
        order = torch.randperm(raw.n_items, generator=torch.Generator().manual_seed(seed))
        held_out = torch.zeros(raw.n_items, dtype=torch.bool)
        held_out[order[:n_held_out]] = True
        keep = {"all": torch.ones_like(held_out), "train": ~held_out, "eval": held_out}[subset]

        self.item_ids = torch.nonzero(keep).squeeze(1)  # [n_subset], ascending
        self.held_out = held_out[self.item_ids]  # [n_subset] bool: in the 'eval' slice
        self.features = features[self.item_ids].contiguous()  # [n_subset, feature_dim]
        self.feature_dim = features.shape[1]
        self.n_items = raw.n_items
        self.titles = raw.titles  # [n_items] whatever the subset, as own_item_ids
        self.own_item_ids = raw.item_ids  # [n_items] the data set's own id of each item (ASIN, movie id, ...)

    def __len__(self) -> int:
        return len(self.item_ids)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.features[i]


class SeqData(Dataset):
    """Leave-one-out examples: (user, the user's history before the target, target).
    `histories` is built on first access ([M, max_seq_len] int64); `__getitem__`
    and `history_batch` gather rows without building the whole matrix, which
    matters for MovieLens 32M."""

    def __init__(self, root: str, dataset: RecDataset | str = "amazon", split: str = "beauty",
                 subset: str = "train", max_seq_len: int | None = None, cache_dir: str = "cache",
                 force_process: bool = False):
        if subset not in SUBSETS:
            raise ValueError(f"subset={subset!r}: expected one of {SUBSETS}")
        dataset = as_dataset(dataset)
        raw = load_processed(root, dataset, split, cache_dir, force_process)
        self.max_seq_len = default_max_seq_len(dataset) if max_seq_len is None else max_seq_len
        rows, lengths = leave_one_out(raw.interactions["user"].to_numpy(), self.max_seq_len)[subset]

        # The flat store (public: data/batching.py copies it to the training device): nothing of size M x max_seq_len.
        self.items = torch.from_numpy(raw.interactions["item"].to_numpy().copy())  # [N] grouped by user, oldest first
        self.target_rows = torch.from_numpy(rows)  # [M] row of each target in the interaction table
        self.user_ids = torch.from_numpy(raw.interactions["user"].to_numpy()[rows].copy())  # [M]
        self.targets = self.items[self.target_rows]  # [M]
        self.history_lengths = torch.from_numpy(lengths)  # [M]
        self.n_users, self.n_items = raw.n_users, raw.n_items
        self._histories: torch.Tensor | None = None

    def history_batch(self, index: torch.Tensor) -> torch.Tensor:
        """index: [B] example indices -> [B, max_seq_len] histories, oldest first, -1 padded."""
        return gather_histories(self.items, self.target_rows[index], self.history_lengths[index], self.max_seq_len)

    @property
    def last_items(self) -> torch.Tensor:
        """[M] the most recent history item of each example (every example has at least one)."""
        return self.items[self.target_rows - 1]

    @property
    def histories(self) -> torch.Tensor:
        if self._histories is None:
            self._histories = self.history_batch(torch.arange(len(self)))
        return self._histories

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "user_id": self.user_ids[i],
            "history": self.history_batch(torch.tensor([i]))[0],
            "history_length": self.history_lengths[i],
            "target": self.targets[i],
        }
