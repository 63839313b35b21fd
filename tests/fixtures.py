"""Tiny data sets in the real raw formats, written by the tests themselves.

Every writer returns the data set's root folder (the `root` that `ItemData` and
`SeqData` take); the raw files land under `<root>/raw/<split>/` exactly as the
public releases lay them out:

- Amazon (P5 release, `P5_data.zip` -> `data/<split>/`): `sequential_data.txt`,
  `datamaps.json`, `meta.json.gz` (one Python-literal dict per line).
- MovieLens 1M (`ml-1m.zip` -> `ml-1m/`): `ratings.dat`, `movies.dat`
  (`::`-separated, latin-1).
- MovieLens 32M (`ml-32m.zip` -> `ml-32m/`): `ratings.csv`, `movies.csv`.
"""
from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np

ML1M_GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
               "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical",
               "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def amazon_sequences(n_users: int, n_items: int, seed: int) -> list[list[int]]:
    """Per user a time-ordered list of 1-based item ids: >= 5 items, no repeats,
    every item of 1..n_items used at least once."""
    if n_items < 5:
        raise ValueError(f"n_items={n_items}: every user needs >= 5 distinct items")
    rng = np.random.default_rng(seed)
    seqs = [list(rng.choice(n_items, size=min(int(rng.integers(5, 13)), n_items), replace=False) + 1)
            for _ in range(n_users)]
    for item in range(1, n_items + 1):  # make the catalogue exactly 1..n_items
        if not any(item in s for s in seqs):
            seqs[item % n_users].append(item)
    return [[int(i) for i in s] for s in seqs]


def amazon_meta(n_items: int, seed: int) -> list[dict]:
    """One metadata dict per item (ASIN `B{id:09d}`), with the optional fields
    missing in a deterministic pattern: brand absent or 'Unknown', price absent,
    categories absent or with two paths."""
    rng = np.random.default_rng(seed + 1)
    rows = []
    for item in range(1, n_items + 1):
        row: dict = {"asin": f"B{item:09d}", "title": f"product {item} {rng.choice(['cream', 'polish', 'brush'])}"}
        if item % 3 == 0:
            row["brand"] = f"brand{item % 4}"
        elif item % 3 == 1:
            row["brand"] = "Unknown"
        if item % 4 == 0:
            row["price"] = round(float(rng.uniform(1, 50)), 2)
        if item % 5 == 0:
            row["categories"] = [["Beauty", "Makeup", "Nails"], ["Beauty", "Tools"]]
        elif item % 5 != 1:
            row["categories"] = [["Beauty", "Skin Care"]]
        if item % 7 == 0:
            del row["title"]
        rows.append(row)
    return rows


def write_amazon_raw(root: Path, split: str = "beauty", n_users: int = 30, n_items: int = 40,
                     seed: int = 0) -> Path:
    """Write a tiny Amazon data set in the P5 layout under `root/raw/<split>/`; return `root`."""
    root = Path(root)
    folder = root / "raw" / split
    folder.mkdir(parents=True, exist_ok=True)
    seqs = amazon_sequences(n_users, n_items, seed)
    with open(folder / "sequential_data.txt", "w") as f:
        for user, seq in enumerate(seqs, start=1):
            f.write(" ".join(str(x) for x in [user, *seq]) + "\n")
    users = {f"U{u:08d}": str(u) for u in range(1, n_users + 1)}
    items = {f"B{i:09d}": str(i) for i in range(1, n_items + 1)}
    datamaps = {"user2id": users, "item2id": items,
                "id2user": {v: k for k, v in users.items()}, "id2item": {v: k for k, v in items.items()}}
    with open(folder / "datamaps.json", "w") as f:
        json.dump(datamaps, f)
    meta = amazon_meta(n_items, seed)
    meta = meta[::-1]  # metadata order is not id order in the real file either
    with gzip.open(folder / "meta.json.gz", "wt") as f:
        for row in meta:
            f.write(repr(row) + "\n")  # Python literals (single quotes), as the 2014 dump
    return root


def movielens_ratings(n_users: int, n_movies: int, seed: int) -> list[tuple[int, int, int, int]]:
    """(user, movie, rating, timestamp) rows, 1-based ids, shuffled; each user rates
    6..12 movies (all of them if fewer); timestamps collide on purpose (ties are common in MovieLens)."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, n_users + 1):
        movies = rng.choice(n_movies, size=min(int(rng.integers(6, 13)), n_movies), replace=False) + 1
        times = 978300000 + np.sort(rng.integers(0, 50, size=len(movies))) * 60
        rows += [(user, int(m), int(rng.integers(1, 6)), int(t)) for m, t in zip(movies, times)]
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


def movielens_movies(n_movies: int, seed: int) -> list[tuple[int, str, list[str]]]:
    rng = np.random.default_rng(seed + 1)
    out = []
    for movie in range(1, n_movies + 1):
        genres = sorted(rng.choice(ML1M_GENRES, size=int(rng.integers(1, 4)), replace=False).tolist())
        out.append((movie, f"Movie {movie}, The ({1950 + movie % 50})", genres))
    return out


def write_ml1m_raw(root: Path, n_users: int = 25, n_movies: int = 30, seed: int = 0,
                   ratings: list[tuple[int, int, int, int]] | None = None) -> Path:
    """Write MovieLens 1M files (`::`-separated, latin-1) under `root/raw/ml-1m/`; return `root`.
    `ratings` overrides the generated (user, movie, rating, timestamp) rows."""
    root = Path(root)
    folder = root / "raw" / "ml-1m"
    folder.mkdir(parents=True, exist_ok=True)
    rows = movielens_ratings(n_users, n_movies, seed) if ratings is None else ratings
    with open(folder / "ratings.dat", "w", encoding="latin-1") as f:
        f.writelines(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in rows)
    with open(folder / "movies.dat", "w", encoding="latin-1") as f:
        for movie, title, genres in movielens_movies(n_movies, seed):
            if movie == 1:
                title = "Café Society (1995)"  # a latin-1 character, as in the real file
            f.write(f"{movie}::{title}::{'|'.join(genres)}\n")
    return root


def write_ml32m_raw(root: Path, n_users: int = 25, n_movies: int = 30, seed: int = 0,
                    ratings: list[tuple[int, int, int, int]] | None = None) -> Path:
    """Write MovieLens 32M files (CSV with header, quoted titles) under `root/raw/ml-32m/`; return `root`."""
    root = Path(root)
    folder = root / "raw" / "ml-32m"
    folder.mkdir(parents=True, exist_ok=True)
    rows = movielens_ratings(n_users, n_movies, seed) if ratings is None else ratings
    with open(folder / "ratings.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        w.writerows([(u, m, r - 0.5 if m % 2 else float(r), t) for u, m, r, t in rows])
    with open(folder / "movies.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["movieId", "title", "genres"])
        for movie, title, genres in movielens_movies(n_movies, seed):
            w.writerow([movie, title, "(no genres listed)" if movie == 2 else "|".join(genres)])
    return root


def without_wall_time(history: list[dict]) -> list[dict]:
    """A run's validation history minus the wall-clock seconds, the one field two equal runs may differ in,
    each protocol's row flattened ("plain/ndcg@10") so that pytest.approx compares every number."""
    flat = lambda h: {f"{k}/{k2}": v2 for k, v in h.items() if isinstance(v, dict) for k2, v2 in v.items()}
    return [{**{k: v for k, v in h.items() if k != "wall_seconds" and not isinstance(v, dict)}, **flat(h)}
            for h in history]


def toy_train_split(base: Path, max_seq_len: int):
    """The training split (a SeqData) of a 30-user, 40-item Amazon fixture written under `base`."""
    from data.processed import SeqData  # here: the raw-file writers above need nothing of the project

    root = write_amazon_raw(base / "amazon", n_users=30, n_items=40)
    return SeqData(str(root), "amazon", "beauty", "train", max_seq_len=max_seq_len, cache_dir=str(base / "cache"))
