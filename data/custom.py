"""Your own data set (`dataset="custom"`): interactions plus item texts or item embeddings.

`<root>/` (the `dataset_folder`; each table as .parquet or .csv, not both):
  interactions   user_id, item_id, timestamp: one row per interaction. Ids are any strings (CSV
                 fields are read as text: '007' and '7' are two ids); timestamp is a number or a
                 date/datetime; equal timestamps keep the file's order. Other columns are ignored.
  items          item_id, text: the catalogue, one row per item; the text is embedded with the
                 sentence encoder (`encoder_model`) exactly as Amazon's and MovieLens' texts are.
or
  item_embeddings.npy   [n_items, d] float vectors you computed (no text is embedded), with
  item_ids              item_id: the id of each row of item_embeddings.npy, in the same order;
                        an `items` table beside them then only gives the titles evaluate.py shows.

Item ids are numbered in catalogue order (items / item_ids rows), users in ascending order of
their id string. Every interaction's item must be in the catalogue (an unknown id is an error
naming the file and line); catalogue items nobody interacted with keep their semantic ID and can
be recommended. Users with fewer than 3 interactions are dropped, with their count printed:
leave-one-out needs a training, a validation and a test item per user. No other filtering (no
k-core): the data is taken as you give it. Titles (what evaluate.py prints) are
'<item_id>: <text>' ('<item_id>' without text).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import torch

from data.raw_data import RawData
from runtime.errors import DataError

MIN_INTERACTIONS = 3  # leave-one-out: a training, a validation and a test target
TABLES = ("interactions", "items", "item_ids")
EMBEDDINGS_FILE = "item_embeddings.npy"


def find_table(root: Path, stem: str) -> Path | None:
    """`<root>/<stem>.parquet` or `.csv`; both present is ambiguous and refused."""
    found = [root / f"{stem}.{ext}" for ext in ("parquet", "csv") if (root / f"{stem}.{ext}").is_file()]
    if len(found) > 1:
        raise DataError(f"{root}: both {found[0].name} and {found[1].name}; keep one")
    return found[0] if found else None


def read_table(path: Path, columns: tuple[str, ...]) -> pl.DataFrame:
    """The `columns` of a parquet or CSV table (CSV fields as text), plus `row`: 0-based data row.
    Only these columns are read (a lazy scan: other columns never reach memory)."""
    scan = pl.scan_parquet(path) if path.suffix == ".parquet" else pl.scan_csv(path, infer_schema=False)
    try:
        names = scan.collect_schema().names()
    except Exception as e:  # not a parquet file, unreadable CSV
        raise DataError(f"{path}: cannot be read as {path.suffix[1:]} ({type(e).__name__}: {e})") from None
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; it has {names}, expected {list(columns)}")
    table = scan.select(columns).with_row_index("row").collect()
    for column in columns:
        if table[column].null_count():
            raise DataError(f"{line(path, table.filter(pl.col(column).is_null())['row'][0])}: empty {column}")
    ids = [c for c in columns if c.endswith("_id")]
    return table.with_columns(pl.col(ids).cast(pl.String))


def line(path: Path, row: int) -> str:
    """Where data row `row` is: 'file.csv:LINE' (the header is line 1) or 'file.parquet, row N'."""
    return f"{path}:{row + 2}" if path.suffix == ".csv" else f"{path}, row {row}"


def sortable_time(table: pl.DataFrame, path: Path) -> pl.Series:
    """The timestamp column as numbers that sort like the times: numbers as they are, dates and
    datetimes (ISO text or parquet temporal types) as microseconds since 1970."""
    ts = table["timestamp"]
    if ts.dtype == pl.String:
        as_number = ts.str.strip_chars().cast(pl.Float64, strict=False)
        if as_number.null_count() == 0:
            return as_number
        try:
            ts = ts.str.strip_chars().str.to_datetime(time_unit="us")
        except Exception:
            bad = table.filter(as_number.is_null())
            raise DataError(f"{line(path, bad['row'][0])}: timestamp {bad['timestamp'][0]!r} is neither a number "
                             "nor a date/datetime (e.g. 1700000000 or 2023-11-14T22:13:20)") from None
    if ts.dtype.is_temporal():
        return ts.cast(pl.Datetime("us")).dt.epoch("us").cast(pl.Float64)
    if ts.dtype.is_numeric():
        return ts.cast(pl.Float64)
    raise DataError(f"{path}: timestamp column of type {ts.dtype}: expected numbers or dates")


def read_catalogue(root: Path) -> tuple[pl.DataFrame, list[str] | None, torch.Tensor]:
    """-> (catalogue: item_id, text (null without), texts to embed or None, precomputed features [n, d])."""
    items_path, ids_path = find_table(root, "items"), find_table(root, "item_ids")
    embeddings_path = root / EMBEDDINGS_FILE
    texts = read_table(items_path, ("item_id", "text")) if items_path else None
    if embeddings_path.is_file():
        if ids_path is None:
            raise FileNotFoundError(f"{embeddings_path} needs {root}/item_ids.parquet or .csv (column item_id: "
                                    "the id of each row of the embeddings, in order)")
        catalogue, source = read_table(ids_path, ("item_id",)), ids_path
        try:
            vectors = np.load(embeddings_path, allow_pickle=False)
        except Exception as e:
            raise DataError(f"{embeddings_path}: not a numpy array file ({type(e).__name__}: {e})") from None
        if vectors.ndim != 2 or vectors.shape[0] != len(catalogue) or not np.issubdtype(vectors.dtype, np.number):
            raise DataError(f"{embeddings_path}: expected a [n_items, d] numeric array with n_items = {len(catalogue)} "
                             f"rows of {ids_path.name}, got shape {vectors.shape} of {vectors.dtype}")
        if not np.isfinite(vectors).all():
            raise DataError(f"{embeddings_path}: holds NaN or infinite values")
        features = torch.from_numpy(vectors.astype(np.float32))
        if texts is not None:  # titles only
            catalogue = catalogue.join(texts.select("item_id", "text"), on="item_id", how="left", maintain_order="left")
        else:
            catalogue = catalogue.with_columns(text=pl.lit(None, pl.String))
        embed = None
    elif texts is not None:
        catalogue, source, features = texts, items_path, torch.zeros(len(texts), 0)
        embed = texts["text"].to_list()
    else:
        raise FileNotFoundError(f"{root}: no item texts (items.parquet or items.csv: item_id, text) and no "
                                f"{EMBEDDINGS_FILE} (with item_ids.parquet or .csv)")
    repeated = catalogue.filter(~pl.col("item_id").is_first_distinct())
    if len(repeated):
        raise DataError(f"{line(source, repeated['row'][0])}: item_id {repeated['item_id'][0]!r} appears more than once")
    if len(catalogue) == 0:
        raise DataError(f"{source}: no items")
    return catalogue.select("item_id", "text"), embed, features


def load_custom(root: str | Path) -> RawData:
    root = Path(root)
    interactions_path = find_table(root, "interactions")
    if interactions_path is None:
        raise FileNotFoundError(f"{root}: no interactions.parquet or interactions.csv (columns user_id, item_id, "
                                "timestamp); see data/custom.py or the README's 'Your own data' section")
    catalogue, texts, features = read_catalogue(root)
    table = read_table(interactions_path, ("user_id", "item_id", "timestamp"))
    table = table.with_columns(time=sortable_time(table, interactions_path))

    item_index = catalogue.select("item_id").with_row_index("item")
    table = table.join(item_index, on="item_id", how="left", maintain_order="left")
    unknown = table.filter(pl.col("item").is_null())
    if len(unknown):
        raise DataError(f"{line(interactions_path, unknown['row'][0])}: item_id {unknown['item_id'][0]!r} is not in the "
                         f"catalogue ({len(unknown):,} interactions name unknown items; every item needs a row in "
                         "items or item_ids)")

    counts = table.group_by("user_id").len()
    short = counts.filter(pl.col("len") < MIN_INTERACTIONS)
    if len(short):
        print(f"{interactions_path}: dropped {len(short):,} of {len(counts):,} users with fewer than {MIN_INTERACTIONS} "
              f"interactions ({int(short['len'].sum()):,} interactions): leave-one-out needs a training, a "
              "validation and a test item per user", file=sys.stderr)
        table = table.join(short.select("user_id"), on="user_id", how="anti", maintain_order="left")
    if len(table) == 0:
        raise DataError(f"{interactions_path}: no user has {MIN_INTERACTIONS} or more interactions")

    users = table.select(pl.col("user_id").unique().sort()).with_row_index("user")
    interactions = (
        table.join(users, on="user_id")
        .sort(["user", "time", "row"])  # each user's interactions oldest first, ties in file order
        .select(pl.col("user").cast(pl.Int64), pl.col("item").cast(pl.Int64))
    )
    titles = catalogue.select(
        pl.when(pl.col("text").is_null()).then(pl.col("item_id"))
        .otherwise(pl.format("{}: {}", "item_id", "text"))
    ).to_series().to_list()
    return RawData(interactions, len(users), len(catalogue), titles, texts, features,
                   catalogue["item_id"].to_list(), users["user_id"].to_list())


def source_fingerprint(root: str | Path) -> list[list]:
    """What the cache was built from: each input file's resolved path, size and modification time.
    A cache whose fingerprint differs is rebuilt (your files change; the public data sets do not)."""
    root = Path(root)
    files = [p for stem in TABLES for p in [find_table(root, stem)] if p] + [p for p in [root / EMBEDDINGS_FILE] if p.is_file()]
    return [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
