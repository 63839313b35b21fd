"""Amazon Reviews 2014 (Beauty, Sports, Toys) in the layout of the P5 release.

`<root>/raw/<split>/`:
  sequential_data.txt  one line per user: `user_id item_id item_id ...`, ids from 1, oldest first
  datamaps.json        `user2id`, `item2id` (ASIN -> id), `id2user`, `id2item`
  meta.json.gz         one Python-literal dict per line: `asin`, optional `title`, `brand`,
                       `categories`, `price`
This is the 5-core data the TIGER paper (Sec. 4.1) evaluates on; item id here = P5 id - 1.
"""
from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path

import polars as pl
import torch

from data.download import download_and_extract
from data.item_text import item_text
from data.raw_data import RawData

# The P5 release (Geng et al., 2022), `P5_data.zip` on Google Drive, linked from
# https://github.com/jeykigung/P5 ("Download preprocessed data"); it unpacks to
# data/{beauty,sports,toys,yelp}/.
P5_GDRIVE_ID = "1qGxgmx7G_WB7JE4Cn_bEcZ_o_NAJLE3G"
P5_URL = f"https://drive.usercontent.google.com/download?id={P5_GDRIVE_ID}&confirm=t"
P5_SPLITS = ("beauty", "sports", "toys")
RAW_FILES = ("sequential_data.txt", "datamaps.json", "meta.json.gz")


def ensure_raw(root: str | Path, split: str) -> Path:
    """Return `<root>/raw/<split>`, downloading the P5 release only if a file is missing."""
    folder = Path(root) / "raw" / split
    if all((folder / name).is_file() for name in RAW_FILES):
        return folder
    if split not in P5_SPLITS:
        raise ValueError(f"split='{split}': Amazon splits are {P5_SPLITS} and {folder} does not hold {RAW_FILES}")
    download_and_extract(P5_URL, "P5_data.zip", folder.parent, folder_in_zip="data")
    missing = [name for name in RAW_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: {missing} still missing after downloading {P5_URL}")
    return folder


def read_sequences(path: Path, n_items: int | None = None) -> pl.DataFrame:
    """`sequential_data.txt` -> columns user, item (0-based), each user's items oldest first.

    Every line must hold a user and at least 3 items (leave-one-out needs a training, a validation
    and a test target; the P5 data is 5-core, so a shorter line means a damaged file: it is an
    error naming the line, not a silent skip that would renumber the users). With `n_items`, an
    item id outside 1..n_items is an error naming the line and the id."""
    lines = pl.read_csv(path, has_header=False, new_columns=["line"], separator="\t", quote_char=None)
    ids = lines.with_row_index("row").with_columns(
        pl.col("line").fill_null("").str.strip_chars().str.split(" ").alias("ids")  # an empty line is null
    )
    bad = ids.filter(pl.col("ids").list.len() < 4)
    if len(bad):
        row, tokens = bad["row"][0], bad["ids"][0].to_list()
        n = len([t for t in tokens if t])
        raise ValueError(f"{path}:{row + 1}: expected 'user_id item_id item_id item_id ...' (a user with at least "
                         f"3 items: train, valid and test targets), got {max(n - 1, 0)} item(s) in {' '.join(tokens)!r}")
    table = ids.select(
        "row",
        pl.col("ids").list.first().alias("user"),
        pl.col("ids").list.slice(1).alias("item"),
    ).explode("item")
    try:
        table = table.select("row", pl.col("user").cast(pl.Int64) - 1, pl.col("item").cast(pl.Int64) - 1)
    except pl.exceptions.InvalidOperationError as e:
        raise ValueError(f"{path}: non-integer id ({e})") from None
    if n_items is not None:
        unknown = table.filter((pl.col("item") < 0) | (pl.col("item") >= n_items))
        if len(unknown):
            raise ValueError(f"{path}:{unknown['row'][0] + 1}: item id {unknown['item'][0] + 1} is not in "
                             f"datamaps.json (id2item knows 1..{n_items})")
    return table.drop("row")


def read_meta(path: Path) -> dict[str, dict]:
    """`meta.json.gz` -> {asin: metadata dict}. Lines are Python literals (single quotes),
    parsed with `ast.literal_eval`, never `eval`."""
    meta = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = ast.literal_eval(line)
            except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
                raise ValueError(f"{path}:{line_no}: malformed metadata line ({type(e).__name__}: {e})") from None
            if not isinstance(row, dict) or "asin" not in row:
                raise ValueError(f"{path}:{line_no}: expected a dict with an 'asin' key")
            meta[row["asin"]] = row
    return meta


def load_amazon(root: str | Path, split: str) -> RawData:
    folder = ensure_raw(root, split)
    with open(folder / "datamaps.json") as f:
        id2item = json.load(f)["id2item"]
    interactions = read_sequences(folder / "sequential_data.txt", n_items=len(id2item))
    meta = read_meta(folder / "meta.json.gz")

    n_items = len(id2item)
    n_users = interactions["user"].n_unique()
    users = interactions["user"]
    if users.min() != 0 or users.max() != n_users - 1 or not users.is_sorted():
        raise ValueError(f"{folder / 'sequential_data.txt'}: user ids must be 1..{n_users}, one line each, in order")
    if interactions["item"].min() < 0 or interactions["item"].max() >= n_items:
        raise ValueError(f"{folder / 'sequential_data.txt'}: item ids outside 1..{n_items} (datamaps.json id2item)")

    titles, texts = [], []
    for item in range(n_items):  # one pass over the catalogue, not the interactions
        row = meta.get(id2item[str(item + 1)], {})
        titles.append(str(row.get("title") or ""))
        texts.append(item_text(row.get("title"), row.get("brand"), row.get("categories"), row.get("price")))
    return RawData(interactions, n_users, n_items, titles, texts, torch.zeros(n_items, 0))
