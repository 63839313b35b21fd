"""A synthetic MovieLens of the real size, in GroupLens' exact file formats.

    python -m bench.make_movielens_standin --out /big/standin --size 32m   # raw/ml-32m/ratings.csv, movies.csv
    python -m bench.make_movielens_standin --out /big/standin --size 1m    # raw/ml-1m/ratings.dat, movies.dat
    python -m bench.make_movielens_standin --out /tmp/toy --size toy --format custom   # interactions + items

The real archives cannot be downloaded everywhere (no network on a build machine, a licence
to accept); the stand-in lets every step be run and timed at the real size. Counts are the
real ones (32M: 32,000,204 ratings, 200,948 users, 87,585 movies; 1M: 1,000,209 ratings,
6,040 users, 3,883 movies) and so is the shape:
- movie popularity is long-tailed, p(rank) ~ (rank + 300)^-2 (at 87k movies) mixed with 0.5% uniform: the top
  movie gets about 100k ratings (as the real 32M's most rated one), the median movie a handful,
  so the 5-rating filter drops many movies, as on the real data;
- user activity is 20 plus a log-normal (median about 80, thousands for the heaviest users),
  scaled to the exact total; a user rates each movie at most once;
- each user's timestamps increase over a log-normal span (minutes to years) starting between
  1995 and 2023, with ties; ratings.csv is ordered by userId then movieId, as GroupLens orders it
  (so the loader's sort by time is exercised), ratings.dat by user in shuffled order;
- titles look like 'Silent River, The (1987)' (some with a subtitle, a comma, a non-ASCII letter),
  genres `|`-separated ('(no genres listed)' for some 32M movies); ratings in GroupLens' steps.
`--format custom` writes the same interactions as a custom data set (data/custom.py):
`interactions.{parquet,csv}` (user_id, item_id, timestamp; string ids) and `items.{parquet,csv}`
(item_id, text). Users are generated in chunks, so memory stays bounded (about 1 GB at 32M).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl


@dataclass(frozen=True)
class Size:
    users: int
    movies: int
    ratings: int
    max_movie_id: int  # movie ids are a sorted random subset of 1..max_movie_id (gaps, as in GroupLens)


SIZES = {
    "32m": Size(users=200_948, movies=87_585, ratings=32_000_204, max_movie_id=292_757),
    "1m": Size(users=6_040, movies=3_883, ratings=1_000_209, max_movie_id=3_952),
    "toy": Size(users=200, movies=300, ratings=8_000, max_movie_id=400),
}
MIN_RATINGS_PER_USER = 20  # GroupLens: every user rated at least 20 movies
HEAVY_USER = 1_000  # more ratings than this: sampled exactly over the whole catalogue (see sample_distinct)
LIGHT_ROUNDS = 4
POPULARITY_EXPONENT, POPULARITY_OFFSET, UNIFORM_SHARE = 2.0, 300 / 87_585, 0.005  # offset: a share of the catalogue
FIRST_TIME, LAST_TIME = 789_652_009, 1_697_164_147  # 1995-01-09 .. 2023-10-13, the real 32M's range
# Rating shares (GroupLens 32M half stars 0.5..5.0; 1M whole stars 1..5), roughly the real ones.
HALF_STAR_SHARES = [0.016, 0.030, 0.017, 0.066, 0.052, 0.195, 0.130, 0.265, 0.086, 0.143]
STAR_SHARES = [0.056, 0.108, 0.261, 0.349, 0.226]
GENRES_32M = ["Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
              "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
              "War", "Western"]
GENRES_1M = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
             "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
             "Western"]
GENRE_WEIGHTS = {"Drama": 8, "Comedy": 6, "Thriller": 3, "Romance": 3, "Action": 3, "Documentary": 2,
                 "Horror": 2, "Crime": 2}  # others weigh 1
ADJECTIVES = ["Silent", "Last", "Dark", "Lost", "Golden", "Broken", "Secret", "Wild", "Little", "Endless",
              "Crimson", "Hidden", "Frozen", "Burning", "Empty", "Forgotten", "Midnight", "Electric", "Quiet",
              "Savage", "Sweet", "Bitter", "Long", "Final", "Eternal", "Strange", "Blue", "Black", "White",
              "Red", "Deadly", "Lonely", "Happy", "Perfect", "Dangerous", "Invisible", "Wicked", "Brave",
              "Gentle", "Iron", "Paper", "Glass", "Stolen", "Hollow", "Distant", "Northern", "Royal", "Cruel",
              "Naked", "Holy", "Crazy", "Velvet", "Shadow", "Summer", "Winter", "Autumn", "Spring", "Sacred",
              "Raging", "Fallen"]
NOUNS = ["River", "Night", "City", "Heart", "Road", "Dream", "House", "Garden", "Mountain", "Sea", "Kingdom",
         "Stranger", "Soldier", "Queen", "King", "Detective", "Girl", "Boy", "Wolf", "Moon", "Sun", "Storm",
         "Island", "Train", "Letter", "Promise", "Secret", "Mirror", "Door", "Bridge", "Forest", "Desert",
         "Empire", "Game", "Song", "Dance", "Voyage", "Escape", "Return", "Revenge", "Legacy", "Angel",
         "Ghost", "Machine", "Planet", "Star", "Hunter", "Thief", "Doctor", "Lawyer", "Teacher", "Family",
         "Brothers", "Sisters", "Wedding", "Funeral", "Holiday", "Summer", "Journey", "Harbor", "Valley",
         "Tower", "Circus", "Station", "Hotel", "Diary", "Museum", "Prison", "Village", "Frontier", "Ocean",
         "Horizon", "Code", "Signal", "Witness", "Affair", "Café", "Señorita", "Château", "Mädchen"]
SUBTITLES = ["Part II", "The Beginning", "Reloaded", "A Love Story", "The Musical", "Origins", "Redemption",
             "The Final Chapter", "Director's Cut", "Homecoming"]


def user_activity(n_users: int, n_ratings: int, max_per_user: int, rng: np.random.Generator) -> np.ndarray:
    """[n_users] ratings per user: 20 + a log-normal, scaled so the counts sum to exactly n_ratings."""
    floor = MIN_RATINGS_PER_USER
    if n_ratings < floor * n_users or n_ratings > max_per_user * n_users:
        raise ValueError(f"{n_ratings} ratings for {n_users} users: need {floor} to {max_per_user} per user")
    extra = np.minimum(rng.lognormal(mean=4.1, sigma=1.3, size=n_users), max_per_user - floor)
    extra = np.floor(extra * (n_ratings - floor * n_users) / extra.sum()).astype(np.int64)
    counts = np.minimum(floor + extra, max_per_user)
    while (missing := n_ratings - int(counts.sum())) > 0:  # rounding and the cap: add the rest one by one
        room = np.flatnonzero(counts < max_per_user)
        counts[rng.choice(room, size=min(missing, len(room)), replace=False)] += 1
    return counts


def movie_popularity(n_movies: int, rng: np.random.Generator) -> np.ndarray:
    """[n_movies] probabilities over movies (index = movie row): long-tailed, ranks shuffled over ids."""
    rank = np.arange(n_movies)
    p = (rank + max(1.0, POPULARITY_OFFSET * n_movies)) ** -POPULARITY_EXPONENT
    p = (1 - UNIFORM_SHARE) * p / p.sum() + UNIFORM_SHARE / n_movies
    return p[rng.permutation(n_movies)]


def sample_distinct(counts: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per user `counts[u]` distinct movies drawn by popularity `p` [n_movies] -> (user [n], movie [n]),
    user-major, each user's movies in random order.

    Light users (most): draw with replacement, keep the distinct ones, draw again (up to
    `LIGHT_ROUNDS` times) for users still short, then keep a random `counts[u]` of each user's
    distinct movies. Heavy users (deep into the tail, where redrawing would take ages) and users
    still short: exact weighted sampling without replacement, the `counts[u]` smallest of
    exponential(1) / p over all movies (one pass over the catalogue per user)."""
    n_movies = len(p)
    cdf = np.cumsum(p)
    exact = counts > min(HEAVY_USER, n_movies // 10)
    users = np.zeros(0, np.int64)
    movies = np.zeros(0, np.int64)
    have = np.zeros(len(counts), np.int64)
    for _ in range(LIGHT_ROUNDS):
        short = np.flatnonzero((have < counts) & ~exact)
        if not short.size:
            break
        new_users = np.repeat(short, (counts[short] - have[short]) * 2 + 2)
        new_movies = np.minimum(np.searchsorted(cdf, rng.random(len(new_users)) * cdf[-1]), n_movies - 1)
        keys = np.unique(np.concatenate([users, new_users]) * n_movies + np.concatenate([movies, new_movies]))
        users, movies = keys // n_movies, keys % n_movies
        have = np.bincount(users, minlength=len(counts))
    exact |= have < counts
    keep = ~exact[users]
    users, movies = users[keep], movies[keep]
    exact_users = np.flatnonzero(exact)
    if len(exact_users):
        picks = [np.argpartition(rng.exponential(size=n_movies) / p, counts[u] - 1)[:counts[u]] for u in exact_users]
        users = np.concatenate([users, np.repeat(exact_users, counts[exact_users])])
        movies = np.concatenate([movies, *picks])
    have = np.bincount(users, minlength=len(counts))
    order = np.lexsort((rng.random(len(users)), users))  # random order within each user
    users, movies = users[order], movies[order]
    first = np.concatenate([[0], np.cumsum(have)[:-1]])
    keep = np.arange(len(users)) - first[users] < counts[users]
    return users[keep], movies[keep]


def user_timestamps(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[sum(counts)] int64 seconds, non-decreasing within each user (user-major), with ties."""
    n = len(counts)
    start = rng.uniform(FIRST_TIME, LAST_TIME - 86_400, size=n)
    span = np.minimum(np.exp(rng.normal(np.log(30 * 86_400), 2.5, size=n)), LAST_TIME - start)  # minutes to years
    user = np.repeat(np.arange(n), counts)
    # Sorted uniforms per user: sort (user, uniform) pairs; floor to whole seconds -> ties happen.
    offsets = rng.random(len(user))
    offsets = offsets[np.lexsort((offsets, user))]
    return (start[user] + offsets * span[user]).astype(np.int64)


def movie_table(size: Size, genres: list[str], rng: np.random.Generator) -> pl.DataFrame:
    """movieId (sorted, with gaps), title 'Name, The (Year)', genres ('|'-joined)."""
    n = size.movies
    ids = np.sort(rng.choice(np.arange(1, size.max_movie_id + 1), size=n, replace=False))
    years = np.clip(np.round(2024 - rng.exponential(22, size=n)), 1902, 2023).astype(int)
    adjectives, nouns = rng.integers(len(ADJECTIVES), size=n), rng.integers(len(NOUNS), size=n)
    form, subtitle = rng.random(n), rng.integers(len(SUBTITLES), size=n)
    titles = []
    for i in range(n):
        name = f"{ADJECTIVES[adjectives[i]]} {NOUNS[nouns[i]]}"
        if form[i] < 0.25:
            name = f"{name}, The"  # GroupLens moves leading articles to the end
        elif form[i] < 0.35:
            name = f"{name}: {SUBTITLES[subtitle[i]]}"
        elif form[i] < 0.40:
            name = f"{name}, {NOUNS[(nouns[i] + 7) % len(NOUNS)]} and Me"  # a comma inside: CSV quoting
        titles.append(f"{name} ({years[i]})")
    weights = np.array([GENRE_WEIGHTS.get(g, 1) for g in genres], dtype=float)
    n_genres = rng.choice([1, 2, 3, 4], size=n, p=[0.45, 0.33, 0.15, 0.07])
    genre_lists = ["|".join(sorted(rng.choice(genres, size=k, replace=False, p=weights / weights.sum())))
                   for k in n_genres]
    if "Children" in genres:  # the 32M release lists some movies without genres
        genre_lists = [("(no genres listed)" if r < 0.07 else g) for g, r in zip(genre_lists, rng.random(n))]
    return pl.DataFrame({"movieId": ids, "title": titles, "genres": genre_lists})


def rating_values(n: int, half_stars: bool, rng: np.random.Generator) -> np.ndarray:
    if half_stars:
        return rng.choice(np.arange(1, 11) / 2, size=n, p=np.array(HALF_STAR_SHARES) / sum(HALF_STAR_SHARES))
    return rng.choice(np.arange(1, 6), size=n, p=np.array(STAR_SHARES) / sum(STAR_SHARES))


def make_standin(out: str | Path, size: str | Size = "toy", seed: int = 0, fmt: str = "movielens",
                 file_type: str = "csv", chunk_users: int = 20_000) -> Path:
    """Write a stand-in data set under `out` and return `out` (the data set's root).

    fmt='movielens': `out/raw/ml-32m/{ratings,movies}.csv` for the 32M layout (also toy sizes),
    `out/raw/ml-1m/{ratings,movies}.dat` for size '1m'. fmt='custom': `out/interactions.<file_type>`,
    `out/items.<file_type>` (data/custom.py's format)."""
    name = size if isinstance(size, str) else "custom-size"
    size = SIZES[size] if isinstance(size, str) else size
    if fmt not in ("movielens", "custom") or file_type not in ("csv", "parquet"):
        raise ValueError(f"fmt={fmt!r}, file_type={file_type!r}: expected movielens|custom and csv|parquet")
    ml1m = name == "1m"
    rng = np.random.default_rng(seed)
    out = Path(out)
    folder = out if fmt == "custom" else out / "raw" / ("ml-1m" if ml1m else "ml-32m")
    folder.mkdir(parents=True, exist_ok=True)

    movies = movie_table(size, GENRES_1M if ml1m else GENRES_32M, rng)
    counts = user_activity(size.users, size.ratings, min(size.movies, max(2 * MIN_RATINGS_PER_USER, size.movies // 3)), rng)
    popularity = movie_popularity(size.movies, rng)
    movie_ids = movies["movieId"].to_numpy()

    if fmt == "custom":
        interactions_path = folder / f"interactions.{file_type}"
        items = movies.select(pl.format("M{}", "movieId").alias("item_id"),
                              pl.format("{}; genres: {}", "title", pl.col("genres").str.replace_all("|", ", ", literal=True)).alias("text"))
        write_table(items, folder / f"items.{file_type}")
    else:
        interactions_path = folder / ("ratings.dat" if ml1m else "ratings.csv")
        write_movies(movies, folder, ml1m)

    chunks = []
    with open(interactions_path, "wb") as f:
        for start in range(0, size.users, chunk_users):
            part = counts[start:start + chunk_users]
            users, movie_rows = sample_distinct(part, popularity, rng)  # rows in the user's random (= time) order
            table = pl.DataFrame({
                "userId": (users + start + 1).astype(np.int32),
                "movieId": movie_ids[movie_rows].astype(np.int32),
                "rating": rating_values(len(users), not ml1m, rng),
                "timestamp": user_timestamps(part, rng),
            })
            if fmt == "custom":
                table = table.select(pl.format("U{}", "userId").alias("user_id"), pl.format("M{}", "movieId").alias("item_id"),
                                     "timestamp")
                if file_type == "parquet":
                    chunks.append(table)
                else:
                    table.write_csv(f, include_header=start == 0)
            elif ml1m:  # 'UserID::MovieID::Rating::Timestamp', users in order, each user's lines shuffled
                table = table.with_columns(pl.Series("_", rng.random(len(table)))).sort("userId", "_")
                f.write(table.select(pl.format("{}::{}::{}::{}", "userId", "movieId", "rating", "timestamp"))
                        .write_csv(include_header=False, quote_style="never").encode("latin-1"))
            else:  # GroupLens orders ratings.csv by userId, then movieId
                table.sort("userId", "movieId").write_csv(f, include_header=start == 0, float_precision=1)
    if chunks:
        pl.concat(chunks).write_parquet(interactions_path)
    return out


def write_movies(movies: pl.DataFrame, folder: Path, ml1m: bool) -> None:
    if ml1m:  # 'MovieID::Title::Genres', latin-1
        lines = movies.select(pl.format("{}::{}::{}", "movieId", "title", "genres")).to_series().to_list()
        (folder / "movies.dat").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    else:
        movies.write_csv(folder / "movies.csv")  # quotes titles holding a comma, as GroupLens does


def write_table(table: pl.DataFrame, path: Path) -> None:
    table.write_parquet(path) if path.suffix == ".parquet" else table.write_csv(path)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m bench.make_movielens_standin", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="the data set root: raw/<ml-32m|ml-1m>/ (or the custom files) go under it")
    parser.add_argument("--size", choices=sorted(SIZES), default="32m")
    parser.add_argument("--users", type=int, help="override the size's user count")
    parser.add_argument("--items", type=int, help="override the size's movie count")
    parser.add_argument("--ratings", type=int, help="override the size's rating count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=("movielens", "custom"), default="movielens")
    parser.add_argument("--file-type", choices=("csv", "parquet"), default="csv", help="custom format only")
    args = parser.parse_args(argv)
    size: str | Size = args.size
    if args.users or args.items or args.ratings:
        base = SIZES[args.size]
        movies = args.items or base.movies
        size = Size(users=args.users or base.users, movies=movies, ratings=args.ratings or base.ratings,
                    max_movie_id=max(base.max_movie_id, movies))
        if args.size == "1m":
            raise SystemExit("--users/--items/--ratings: only with --size 32m or toy (the CSV layout)")
    start = time.time()
    root = make_standin(args.out, size, args.seed, args.format, args.file_type)
    print(f"wrote {args.size} stand-in ({args.format}) under {root} in {time.time() - start:.0f}s", file=sys.stderr)
    return root


if __name__ == "__main__":
    main()
