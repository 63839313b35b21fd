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
import zlib
from pathlib import Path

import polars as pl
import torch

from data.download import ensure_raw_files, missing_files
from data.item_text import item_text
from data.raw_data import RawData
from runtime.errors import ConfigError, DataError

# The P5 release (Geng et al., 2022), `P5_data.zip` on Google Drive, linked from
# https://github.com/jeykigung/P5 ("Download preprocessed data"); it unpacks to
# data/{beauty,sports,toys,yelp}/.
P5_GDRIVE_ID = "1qGxgmx7G_WB7JE4Cn_bEcZ_o_NAJLE3G"
P5_URL = f"https://drive.usercontent.google.com/download?id={P5_GDRIVE_ID}&confirm=t"
P5_SPLITS = ("beauty", "sports", "toys")
RAW_FILES = ("sequential_data.txt", "datamaps.json", "meta.json.gz")


def ensure_raw(root: str | Path, split: str) -> Path:
    """Return `<root>/raw/<split>`; the files are looked for first, and the P5 release is
    downloaded only if one is missing (data/download.py)."""
    folder = Path(root) / "raw" / split
    if split not in P5_SPLITS and missing_files(folder, RAW_FILES):
        raise ConfigError(f"train.split = {split!r}: the P5 release has {', '.join(P5_SPLITS)}, and {folder} does not "
                          f"hold {', '.join(RAW_FILES)}", binding="split")
    return ensure_raw_files(folder, RAW_FILES, root, P5_URL, "P5_data.zip", folder_in_zip="data",
                            manual_step=f"unzip P5_data.zip (Google Drive, linked from github.com/jeykigung/P5) and "
                                        f"move its data/{split}/ folder to {folder}/")


def read_sequences(path: Path, n_items: int | None = None, n_users: int | None = None) -> pl.DataFrame:
    """`sequential_data.txt` -> columns user, item (0-based), each user's items oldest first.

    Every line must hold a user and at least 3 items (leave-one-out needs a training, a validation
    and a test target; the P5 data is 5-core, so a shorter line means a damaged file: it is an
    error naming the line, not a silent skip that would renumber the users). Line k must be user k.
    With `n_items` and `n_users` (from datamaps.json), an item id outside 1..n_items, or another
    number of lines than users (a truncated file), is an error naming the line, the id or the counts."""
    try:
        lines = pl.read_csv(path, has_header=False, new_columns=["line"], separator="\t", quote_char=None)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise DataError(f"{path}: unreadable ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    ids = lines.with_row_index("row").with_columns(
        pl.col("line").fill_null("").str.strip_chars().str.split(" ").alias("ids")  # an empty line is null
    )
    bad = ids.filter(pl.col("ids").list.len() < 4)
    if len(bad):
        row, tokens = bad["row"][0], bad["ids"][0].to_list()
        n = len([t for t in tokens if t])
        raise DataError(f"{path}:{row + 1}: expected 'user_id item_id item_id item_id ...' (a user with at least "
                        f"3 items: train, valid and test targets), got {max(n - 1, 0)} item(s) in {' '.join(tokens)!r}")
    tokens = ids.select("row", pl.col("ids").list.first().alias("user"), pl.col("ids").list.slice(1).alias("item"))
    tokens = tokens.explode("item")
    table = tokens.select("row", pl.col("user").cast(pl.Int64, strict=False) - 1, pl.col("item").cast(pl.Int64, strict=False) - 1)
    not_integer = table.select(pl.col("user").is_null() | pl.col("item").is_null()).to_series()
    if not_integer.any():
        at = int(not_integer.arg_true()[0])
        token = tokens["user"][at] if table["user"][at] is None else tokens["item"][at]
        raise DataError(f"{path}:{tokens['row'][at] + 1}: {token!r} is not an integer id")
    misplaced = table.filter(pl.col("user") != pl.col("row"))
    if len(misplaced):
        row = misplaced["row"][0]
        raise DataError(f"{path}:{row + 1}: user id {misplaced['user'][0] + 1}, expected {row + 1} (line k holds user k)")
    if n_items is not None:
        unknown = table.filter((pl.col("item") < 0) | (pl.col("item") >= n_items))
        if len(unknown):
            raise DataError(f"{path}:{unknown['row'][0] + 1}: item id {unknown['item'][0] + 1} is not in "
                            f"datamaps.json (id2item knows 1..{n_items})")
    if n_users is not None and len(lines) != n_users:
        raise DataError(f"{path} has {len(lines):,} user lines but datamaps.json lists {n_users:,} users (id2user): "
                        "the file is truncated, or the two files come from different releases")
    return table.drop("row")


def read_meta(path: Path) -> dict[str, dict]:
    """`meta.json.gz` -> {asin: metadata dict}. Lines are Python literals (single quotes),
    parsed with `ast.literal_eval`, never `eval`. A file that is not gzip, or is cut short,
    is an error naming it."""
    meta = {}
    line_no = 0
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = ast.literal_eval(line)
                except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
                    raise DataError(f"{path}:{line_no}: malformed metadata line ({type(e).__name__}: {e})") from None
                if not isinstance(row, dict) or "asin" not in row:
                    raise DataError(f"{path}:{line_no}: expected a dict with an 'asin' key")
                meta[row["asin"]] = row
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:  # BadGzipFile is an OSError
        where = f"after line {line_no}" if line_no else "from its start"
        raise DataError(f"{path}: not a readable gzip file {where} (truncated, or not gzip: "
                        f"{type(e).__name__}: {e})") from None
    return meta


def read_datamaps(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """`datamaps.json` -> (id2item: '1'-based id -> ASIN, id2user: '1'-based id -> reviewer id)."""
    try:
        with open(path) as f:
            maps = json.load(f)
        return maps["id2item"], maps["id2user"]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    except (KeyError, TypeError) as e:
        raise DataError(f"{path}: expected an object with 'id2item' and 'id2user' (missing {e})") from None


def load_amazon(root: str | Path, split: str) -> RawData:
    folder = ensure_raw(root, split)
    id2item, id2user = read_datamaps(folder / "datamaps.json")
    n_items, n_users = len(id2item), len(id2user)
    # checked against datamaps.json before anything is cached: lines, user order, item ids
    interactions = read_sequences(folder / "sequential_data.txt", n_items=n_items, n_users=n_users)
    meta = read_meta(folder / "meta.json.gz")

    try:  # internal id = P5 id - 1, for items as for users
        item_ids = [id2item[str(item + 1)] for item in range(n_items)]  # ASINs
        user_ids = [id2user[str(user + 1)] for user in range(n_users)]  # reviewer ids
    except KeyError as e:
        raise DataError(f"{folder / 'datamaps.json'}: id {e} is missing (id2item and id2user number from 1 "
                        "without gaps)") from None

    titles, texts = [], []
    for asin in item_ids:  # one pass over the catalogue, not the interactions
        row = meta.get(asin, {})
        titles.append(str(row.get("title") or ""))
        texts.append(item_text(row.get("title"), row.get("brand"), row.get("categories"), row.get("price")))
    return RawData(interactions, n_users, n_items, titles, texts, torch.zeros(n_items, 0), item_ids, user_ids)
