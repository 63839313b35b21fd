"""Where a run's files live: <save_dir>/<dataset>-<split>/, and stage 1's tokenizer in it."""
from __future__ import annotations

from pathlib import Path

from runtime.errors import MissingFileError


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
