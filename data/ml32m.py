"""MovieLens 32M (GroupLens `ml-32m.zip`): `<root>/raw/ml-32m/ratings.csv`, `movies.csv`.

ratings.csv: `userId,movieId,rating,timestamp`; movies.csv: `movieId,title,genres`
(quoted titles, genres `|`-separated, '(no genres listed)' for none); UTF-8.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from data.movielens import ensure_raw, movielens_raw_data
from data.raw_data import RawData

RAW_FILES = ("ratings.csv", "movies.csv")


def read_ratings(path: Path) -> pl.DataFrame:
    return pl.read_csv(
        path, columns=["userId", "movieId", "timestamp"],
        schema_overrides={"userId": pl.Int64, "movieId": pl.Int64, "timestamp": pl.Int64},
    ).select(pl.col("userId").alias("user"), pl.col("movieId").alias("movie"), "timestamp")


def read_movies(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, schema_overrides={"movieId": pl.Int64, "title": pl.String, "genres": pl.String}).select(
        pl.col("movieId").alias("movie"), "title", pl.col("genres").str.split("|")
    )


def load_ml32m(root: str | Path) -> RawData:
    folder = ensure_raw(root, "ml-32m", RAW_FILES)
    return movielens_raw_data(read_ratings(folder / "ratings.csv"), read_movies(folder / "movies.csv"), folder)
