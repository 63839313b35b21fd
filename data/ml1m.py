"""MovieLens 1M (GroupLens `ml-1m.zip`): `<root>/raw/ml-1m/ratings.dat`, `movies.dat`.

ratings.dat: `UserID::MovieID::Rating::Timestamp`; movies.dat: `MovieID::Title::Genres`
(genres `|`-separated); latin-1 text.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from data.movielens import ensure_raw, movielens_raw_data
from data.raw_data import RawData
from runtime.errors import DataError

RAW_FILES = ("ratings.dat", "movies.dat")


def read_ratings(path: Path) -> pl.DataFrame:
    # polars takes a one-byte separator: split on ':' and keep every other column
    # ('1::1193::5::978300760' -> 1, '', 1193, '', 5, '', 978300760). Ratings hold digits only.
    try:
        table = pl.read_csv(path, has_header=False, separator=":", quote_char=None, infer_schema=False)
    except pl.exceptions.PolarsError as e:  # e.g. a line with another number of fields
        raise DataError(f"{path}: expected 'UserID::MovieID::Rating::Timestamp' lines ({str(e).splitlines()[0]})") from None
    if table.width != 7:
        raise DataError(f"{path}: expected 'UserID::MovieID::Rating::Timestamp' lines, got {table.width} ':'-fields")
    table.columns = ["user", "_", "movie", "__", "rating", "___", "timestamp"]
    ints = table.select(pl.col("user", "movie", "timestamp").cast(pl.Int64, strict=False))
    bad = ints.select(pl.any_horizontal(pl.all().is_null())).to_series()
    if bad.any():
        row = int(bad.arg_true()[0])
        raise DataError(f"{path}:{row + 1}: non-integer field in {':'.join(v or '' for v in table.row(row))!r}")
    return ints


def read_movies(path: Path) -> pl.DataFrame:
    # Titles may contain ':' themselves, so split each line at the first and last '::'.
    rows = []
    with open(path, encoding="latin-1") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            movie, sep, rest = line.rstrip("\n").partition("::")
            title, sep2, genres = rest.rpartition("::")
            if not (sep and sep2 and movie.isdigit()):
                raise DataError(f"{path}:{line_no}: expected 'MovieID::Title::Genres'")
            rows.append((int(movie), title, genres.split("|") if genres else []))
    return pl.DataFrame(rows, schema={"movie": pl.Int64, "title": pl.String, "genres": pl.List(pl.String)}, orient="row")


def load_ml1m(root: str | Path) -> RawData:
    folder = ensure_raw(root, "ml-1m", RAW_FILES)
    return movielens_raw_data(read_ratings(folder / "ratings.dat"), read_movies(folder / "movies.dat"), folder)
