"""Reading the cache files of data/ (processed tables, item embeddings) without trusting them.

A file that cannot be loaded, or whose recorded SHA-256 does not match, is refused with a
CacheError naming it and saying how to rebuild it; it is never half-used.
"""
from __future__ import annotations

from pathlib import Path

import torch

from runtime.errors import CacheError

REBUILD_ADVICE = "delete it, or rebuild the cache with `python -m data ... --force-process` (ItemData/SeqData force_process=True)"


def load_cache_file(path: Path) -> dict:
    """torch.load a cache file; a truncated or unreadable one raises CacheError naming it."""
    try:
        return torch.load(path, weights_only=True)
    except Exception as e:  # truncated zip, bad pickle: do not guess what it held
        raise CacheError(f"cache file {path} is truncated or corrupted ({type(e).__name__}: {e}); {REBUILD_ADVICE}") from e
