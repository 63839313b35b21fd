"""The MovieLens stand-in (bench/make_movielens_standin.py): GroupLens' formats, exact counts, realistic shape."""
import numpy as np
import polars as pl
import pytest

from bench.make_movielens_standin import SIZES, Size, main, make_standin, sample_distinct, user_activity
from data.ml1m import load_ml1m, read_movies as read_movies_dat, read_ratings as read_ratings_dat
from data.ml32m import load_ml32m

MEDIUM = Size(users=600, movies=2_000, ratings=60_000, max_movie_id=5_000)


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    return make_standin(tmp_path_factory.mktemp("standin") / "ml", MEDIUM, seed=1) / "raw" / "ml-32m"


def test_32m_layout_has_grouplens_headers_counts_and_order(medium):
    assert (medium / "ratings.csv").read_text().splitlines()[0] == "userId,movieId,rating,timestamp"
    assert (medium / "movies.csv").read_text().splitlines()[0] == "movieId,title,genres"
    ratings = pl.read_csv(medium / "ratings.csv")
    movies = pl.read_csv(medium / "movies.csv")
    assert len(ratings) == MEDIUM.ratings and len(movies) == MEDIUM.movies
    assert ratings["userId"].n_unique() == MEDIUM.users and ratings["userId"].min() == 1
    assert movies["movieId"].is_sorted() and movies["movieId"].n_unique() == MEDIUM.movies
    assert movies["movieId"].max() <= MEDIUM.max_movie_id
    assert set(ratings["movieId"].unique()) <= set(movies["movieId"])
    # ordered by userId, then movieId (as GroupLens orders ratings.csv); a movie rated once per user
    assert ratings.select(pl.col("userId") * 10**7 + pl.col("movieId"))["userId"].is_sorted()
    assert ratings.select("userId", "movieId").is_unique().all()
    assert set(ratings["rating"].unique()) <= {x / 2 for x in range(1, 11)}
    assert "4.0" in (medium / "ratings.csv").read_text()[:10_000]  # floats written as GroupLens does
    # titles with years, '|'-joined genres, quoting of titles with commas
    assert movies["title"].str.contains(r" \(\d{4}\)$").all()
    assert movies["genres"].str.contains("|", literal=True).any()
    assert movies["title"].str.contains(",").any() and '"' in (medium / "movies.csv").read_text()


def test_32m_shape_long_tailed_movies_active_users_increasing_time(medium):
    ratings = pl.read_csv(medium / "ratings.csv")
    per_user = ratings.group_by("userId").len()["len"]
    per_movie = ratings.group_by("movieId").len()["len"].sort(descending=True)
    assert per_user.min() >= 20 and per_user.max() > 5 * per_user.median()
    assert per_movie[0] > 20 * per_movie.median()  # long tail
    assert per_movie.head(len(per_movie) // 10).sum() > 0.4 * len(ratings)  # the top 10% of movies: most ratings
    # each user's timestamps span a period, with ties; the loader orders them (tested in test_movielens)
    span = ratings.group_by("userId").agg((pl.col("timestamp").max() - pl.col("timestamp").min()).alias("s"))["s"]
    assert (span > 0).all()
    assert ratings.select("userId", "timestamp").is_duplicated().any()


def test_loads_through_the_ml32m_reader_and_is_deterministic(medium, tmp_path):
    raw = load_ml32m(medium.parent.parent)
    assert raw.n_users == MEDIUM.users  # every user keeps >= 5 ratings after the 5-core
    assert 0 < raw.n_items < MEDIUM.movies  # the 5-rating filter drops tail movies, as on the real data
    again = make_standin(tmp_path / "again", MEDIUM, seed=1) / "raw" / "ml-32m"
    other = make_standin(tmp_path / "other", MEDIUM, seed=2) / "raw" / "ml-32m"
    assert (again / "ratings.csv").read_bytes() == (medium / "ratings.csv").read_bytes()
    assert (other / "ratings.csv").read_bytes() != (medium / "ratings.csv").read_bytes()


def test_1m_layout_is_double_colon_latin1_with_the_real_counts(tmp_path):
    folder = make_standin(tmp_path, "1m", seed=0) / "raw" / "ml-1m"
    ratings = read_ratings_dat(folder / "ratings.dat")
    movies = read_movies_dat(folder / "movies.dat")
    size = SIZES["1m"]
    assert len(ratings) == size.ratings and ratings["user"].n_unique() == size.users and len(movies) == size.movies
    assert (folder / "ratings.dat").read_text().splitlines()[0].count("::") == 3
    text = (folder / "movies.dat").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        text.decode("utf-8")  # latin-1 bytes, as GroupLens' file
    assert any(c in text.decode("latin-1") for c in "éñäâ")
    assert "Children's" in text.decode("latin-1")
    assert load_ml1m(tmp_path).n_users == size.users


def test_custom_format_has_string_ids_and_item_texts(tmp_path):
    for file_type, read in (("csv", pl.read_csv), ("parquet", pl.read_parquet)):
        root = make_standin(tmp_path / file_type, "toy", fmt="custom", file_type=file_type)
        inter, items = read(root / f"interactions.{file_type}"), read(root / f"items.{file_type}")
        assert inter.columns == ["user_id", "item_id", "timestamp"] and items.columns == ["item_id", "text"]
        assert inter["user_id"].dtype == pl.String and inter["item_id"].str.starts_with("M").all()
        assert len(inter) == SIZES["toy"].ratings and set(inter["item_id"]) <= set(items["item_id"])
        assert items["text"].str.contains("; genres: ").all()


def test_activity_sums_exactly_and_sampling_is_without_replacement():
    rng = np.random.default_rng(0)
    counts = user_activity(500, 100_000, 1_500, rng)
    assert counts.sum() == 100_000 and counts.min() >= 20 and counts.max() <= 1_500
    p = np.linspace(1, 0.01, 3_000) ** 4
    users, movies = sample_distinct(counts, p / p.sum(), rng)  # heavy users (> 1,000) take the exact path
    assert np.array_equal(np.bincount(users, minlength=500), counts)
    assert len(np.unique(users * 3_000 + movies)) == len(users)
    with pytest.raises(ValueError, match="need 20 to"):
        user_activity(10, 100, 50, rng)


def test_cli_overrides_sizes(tmp_path):
    root = main(["--out", str(tmp_path), "--size", "toy", "--users", "30", "--items", "50", "--ratings", "900"])
    ratings = pl.read_csv(root / "raw" / "ml-32m" / "ratings.csv")
    assert len(ratings) == 900 and ratings["userId"].n_unique() == 30
    assert len(pl.read_csv(root / "raw" / "ml-32m" / "movies.csv")) == 50
