"""What MovieLens 1M and 32M share: download, the 5-rating filter, id maps, genres.

The format readers (`ml1m.py`, `ml32m.py`) hand over two tables:
  ratings: user, movie, timestamp (GroupLens ids), in file order
  movies:  movie, title, genres (list of str)
"""
from __future__ import annotations

from pathlib import Path

import polars as pl
import torch

from data.download import ensure_raw_files
from data.raw_data import RawData
from runtime.errors import DataError

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/{name}.zip"
# MD5s GroupLens publishes beside each archive (<url>.md5, fetched and compared at download time too).
# ml-32m: the digest of the 238,950,008-byte release, as public projects that verify it quote it
# (not checked against GroupLens' server from here: no network to it).
GROUPLENS_MD5 = {"ml-1m": "c4d9eecfca2ab87c1945afe126590906", "ml-32m": "d472be332d4daa821edc399621853b57"}
MIN_RATINGS = 5
NO_GENRE = "(no genres listed)"  # ML-32M's marker for an empty genre list


def ensure_raw(root: str | Path, name: str, files: tuple[str, ...]) -> Path:
    """Return `<root>/raw/<name>` (`name` = 'ml-1m' or 'ml-32m'); the files are looked for first,
    and the GroupLens zip is downloaded only if one is missing (data/download.py)."""
    folder = Path(root) / "raw" / name
    url = GROUPLENS_URL.format(name=name)
    return ensure_raw_files(folder, files, root, url, f"{name}.zip", expected_md5=GROUPLENS_MD5.get(name), md5_url=f"{url}.md5",
                            manual_step=f"unzip {name}.zip ({url}) inside {folder.parent}/ (it unpacks to {name}/"
                                        f"{', '.join(files)})")


def filter_min_ratings(ratings: pl.DataFrame, min_count: int = MIN_RATINGS) -> pl.DataFrame:
    """Keep users and movies with at least `min_count` ratings, iterated to a fixed
    point (a k-core): dropping a movie can push a user below the threshold and back,
    so one pass is not enough for "every kept user and movie has >= 5 ratings"."""
    while True:
        kept = ratings.filter(
            (pl.len().over("user") >= min_count) & (pl.len().over("movie") >= min_count)
        )
        if len(kept) == len(ratings):
            return kept
        ratings = kept


def movielens_raw_data(ratings: pl.DataFrame, movies: pl.DataFrame, source: Path) -> RawData:
    ratings = filter_min_ratings(ratings)
    if len(ratings) == 0:
        raise DataError(f"{source}: no user and movie has >= {MIN_RATINGS} ratings")
    # Dense 0-based ids in ascending GroupLens id order.
    users = ratings.select(pl.col("user").unique().sort()).with_row_index("user_id")
    items = ratings.select(pl.col("movie").unique().sort()).with_row_index("item_id")
    items = items.join(movies, on="movie", how="left", maintain_order="left")
    if items["title"].null_count():
        unknown = items.filter(pl.col("title").is_null())["movie"][0]
        raise DataError(f"{source}: movie {unknown} is rated but missing from the movies file")

    # Each user's ratings oldest first; ties keep the file's order (stable sort).
    interactions = (
        ratings.with_row_index("row")
        .join(users, on="user").join(items.select("movie", "item_id"), on="movie")
        .sort(["user_id", "timestamp", "row"])
        .select(pl.col("user_id").cast(pl.Int64).alias("user"), pl.col("item_id").cast(pl.Int64).alias("item"))
    )

    # Genre multi-hot, appended to the title embedding; vocabulary = genres of the
    # kept movies, sorted, so the feature layout depends only on the data.
    vocab = sorted(set(items["genres"].explode().drop_nulls().to_list()) - {NO_GENRE, ""})
    genre_index = {g: i for i, g in enumerate(vocab)}
    pairs = items.select("item_id", "genres").explode("genres").filter(pl.col("genres").is_in(vocab))
    multi_hot = torch.zeros(len(items), len(vocab))
    rows = torch.as_tensor(pairs["item_id"].to_numpy().astype("int64"))
    cols = torch.as_tensor([genre_index[g] for g in pairs["genres"].to_list()], dtype=torch.long)
    multi_hot[rows, cols] = 1.0

    titles = items["title"].to_list()
    item_ids, user_ids = ([str(i) for i in ids] for ids in (items["movie"].to_list(), users["user"].to_list()))
    return RawData(interactions, len(users), len(items), titles, list(titles), multi_hot, item_ids, user_ids)
