from pathlib import Path

import polars as pl
import pytest
import torch

import data.download as download
import data.movielens as movielens
from data.ml1m import load_ml1m
from data.ml32m import load_ml32m
from data.movielens import GROUPLENS_URL, filter_min_ratings
from tests.fixtures import movielens_movies, movielens_ratings, write_ml1m_raw, write_ml32m_raw


def expected_sequences(rows):
    """Oracle: per user (ascending id), movies by timestamp, ties in file order."""
    by_user = {}
    for order, (u, m, _, t) in enumerate(rows):
        by_user.setdefault(u, []).append((t, order, m))
    return {u: [m for _, _, m in sorted(v)] for u, v in sorted(by_user.items())}


@pytest.mark.parametrize("writer,loader", [(write_ml1m_raw, load_ml1m), (write_ml32m_raw, load_ml32m)])
def test_ratings_ordered_by_timestamp_with_file_order_for_ties(tmp_path, writer, loader):
    # 8 movies rated by everyone: nothing is filtered, so the oracle needs no filter.
    rows = movielens_ratings(n_users=10, n_movies=8, seed=1)
    assert any(a[0] == b[0] and a[3] == b[3] for a in rows for b in rows if a is not b)  # ties exist
    raw = loader(writer(tmp_path, n_users=10, n_movies=8, seed=1))
    expected = expected_sequences(rows)
    assert raw.n_users == 10 and raw.n_items == 8
    got = raw.interactions.group_by("user", maintain_order=True).agg("item")
    assert got["user"].to_list() == list(range(10))
    assert got["item"].to_list() == [[m - 1 for m in seq] for seq in expected.values()]


def test_titles_are_the_item_text_and_latin1_decoded(tmp_path):
    raw = load_ml1m(write_ml1m_raw(tmp_path, n_users=10, n_movies=8, seed=1))
    assert raw.titles[0] == "Café Society (1995)"
    assert raw.texts == raw.titles
    assert raw.titles[1] == "Movie 2, The (1952)"


def test_genre_multi_hot(tmp_path):
    movies = movielens_movies(8, seed=1)
    raw1 = load_ml1m(write_ml1m_raw(tmp_path / "a", n_users=10, n_movies=8, seed=1))
    vocab = sorted({g for _, _, gs in movies for g in gs})
    assert raw1.extra_features.shape == (8, len(vocab))
    for item, (_, _, genres) in enumerate(movies):
        assert {vocab[j] for j in torch.nonzero(raw1.extra_features[item]).flatten().tolist()} == set(genres)
    raw32 = load_ml32m(write_ml32m_raw(tmp_path / "b", n_users=10, n_movies=8, seed=1))
    assert raw32.extra_features[1].sum() == 0  # '(no genres listed)' is not a genre


def test_five_rating_filter_iterates_to_a_fixed_point():
    # Users 1-5 rate movies 1-5; user 6 rates 1-4 and 6; users 1-3 also rate 6.
    # Movie 6 has 4 ratings -> dropped; then user 6 has 4 -> dropped (a single pass would keep them).
    rows = [(u, m) for u in range(1, 6) for m in range(1, 6)] + [(6, m) for m in (1, 2, 3, 4, 6)]
    rows += [(u, 6) for u in (1, 2, 3)]
    ratings = pl.DataFrame(rows, schema={"user": pl.Int64, "movie": pl.Int64}, orient="row").with_columns(
        timestamp=pl.int_range(pl.len()))
    single_pass = ratings.filter((pl.len().over("user") >= 5) & (pl.len().over("movie") >= 5))
    assert 6 in single_pass["user"].to_list()  # the case a single pass gets wrong
    kept = filter_min_ratings(ratings)
    assert sorted(set(kept["user"])) == [1, 2, 3, 4, 5] and sorted(set(kept["movie"])) == [1, 2, 3, 4, 5]
    assert len(kept) == 25


def test_filter_applied_when_loading(tmp_path):
    rows = [(u, m, 4, 1000 + m) for u in range(1, 6) for m in range(1, 6)]
    rows += [(6, m, 3, 2000 + m) for m in (1, 2, 3, 4, 6)] + [(u, 6, 5, 3000) for u in (1, 2, 3)]
    raw = load_ml1m(write_ml1m_raw(tmp_path, n_movies=6, ratings=rows))
    assert raw.n_users == 5 and raw.n_items == 5 and len(raw.interactions) == 25
    counts = raw.interactions.group_by("item").len()["len"]
    assert counts.min() >= 5


def test_movielens_download_when_missing(tmp_path, monkeypatch):
    import hashlib
    import shutil
    import zipfile

    source = write_ml1m_raw(tmp_path / "source")
    archive = tmp_path / "served.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("ratings.dat", "movies.dat"):
            z.write(source / "raw" / "ml-1m" / name, f"ml-1m/{name}")
    calls = []

    def fake_download_url(url, folder, log=True, filename=None):
        calls.append(url)
        if url.endswith(".md5"):  # GroupLens' checksum file, in its format, for the archive served here
            Path(folder, filename).write_text(f"MD5 ({filename.removesuffix('.md5')}) = {hashlib.md5(archive.read_bytes()).hexdigest()}\n")
        else:
            shutil.copy(archive, Path(folder, filename))
        return f"{folder}/{filename}"

    monkeypatch.setattr(download, "download_url", fake_download_url)
    monkeypatch.setitem(movielens.GROUPLENS_MD5, "ml-1m", None)  # a fake archive: the published digest is the check
    raw = load_ml1m(tmp_path / "root")
    url = GROUPLENS_URL.format(name="ml-1m")
    assert url == "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    assert calls == [f"{url}.md5", url]  # the checksum file first, then the archive it vouches for
    assert raw.n_users == 25
    load_ml1m(tmp_path / "root")
    assert len(calls) == 2  # files present now: no second download


def test_rated_movie_missing_from_movies_file_is_an_error(tmp_path):
    root = write_ml1m_raw(tmp_path, n_users=10, n_movies=8, seed=1)
    path = root / "raw" / "ml-1m" / "movies.dat"
    lines = path.read_text(encoding="latin-1").splitlines()
    path.write_text("\n".join(lines[1:]) + "\n", encoding="latin-1")
    with pytest.raises(ValueError, match="movie 1 is rated but missing"):
        load_ml1m(root)
