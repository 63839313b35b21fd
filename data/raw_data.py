"""What every raw-format reader hands to the processing step."""
from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import torch


@dataclass
class RawData:
    # One row per interaction, columns `user`, `item` (0-based int64). Rows are
    # grouped by user (ascending) and, within a user, oldest first.
    interactions: pl.DataFrame
    n_users: int
    n_items: int
    titles: list[str]  # index = item id
    texts: list[str] | None  # what the sentence encoder reads, index = item id; None: nothing to embed
    extra_features: torch.Tensor  # [n_items, n_extra] appended to the text embedding (genres; a custom data
    # set's own embeddings when texts is None); n_extra may be 0
    # The data set's own ids, as text, index = the 0-based number used everywhere else: Amazon ASINs and
    # reviewer ids, MovieLens movie and user ids, a custom data set's strings. What a person asks with
    # (serving/: recommend by ASIN); nothing of training reads them.
    item_ids: list[str]
    user_ids: list[str]
