"""Downloaded archives are checked against the digest the source publishes before extraction."""
import hashlib
import zipfile

import pytest

import data.download as download
import data.movielens as movielens
from data.ml1m import load_ml1m
from modules.errors import MissingFileError
from tests.fixtures import write_ml1m_raw


def fake_grouplens(tmp_path, monkeypatch):
    """A fake ml-1m.zip served in place of the network; returns its MD5."""
    source = write_ml1m_raw(tmp_path / "source")
    archive = tmp_path / "served.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("ratings.dat", "movies.dat"):
            z.write(source / "raw" / "ml-1m" / name, f"ml-1m/{name}")
    payload = archive.read_bytes()

    def fake_download_url(url, folder, log=True, filename=None):
        (tmp_path / "downloads").mkdir(exist_ok=True)
        with open(f"{folder}/{filename}", "wb") as f:
            f.write(payload)
        return f"{folder}/{filename}"

    monkeypatch.setattr(download, "download_url", fake_download_url)
    return hashlib.md5(payload).hexdigest()


def test_published_ml1m_digest_is_the_grouplens_one():
    # GroupLens publishes https://files.grouplens.org/datasets/movielens/ml-1m.zip.md5
    assert movielens.GROUPLENS_MD5["ml-1m"] == "c4d9eecfca2ab87c1945afe126590906"


def test_matching_digest_extracts(tmp_path, monkeypatch):
    digest = fake_grouplens(tmp_path, monkeypatch)
    monkeypatch.setitem(movielens.GROUPLENS_MD5, "ml-1m", digest)
    assert load_ml1m(tmp_path / "root").n_users == 25


def test_mismatching_digest_deletes_the_download_and_names_the_url(tmp_path, monkeypatch):
    fake_grouplens(tmp_path, monkeypatch)  # served bytes differ from the real archive's published MD5
    with pytest.raises(MissingFileError, match=r"ml-1m\.zip: the download's MD5 is [0-9a-f]{32}, the published one is c4d9ee"):
        load_ml1m(tmp_path / "root")
    assert not (tmp_path / "root").exists()  # nothing extracted, not even the folder; the download removed


def test_torch_geometric_helpers_fetch_and_extract_a_local_archive(tmp_path):
    """The real download path (torch-geometric's download_url and extract_zip), served from a file:// URL."""
    import zipfile

    archive = tmp_path / "P5_data.zip"
    with zipfile.ZipFile(archive, "w") as f:
        f.writestr("data/beauty/sequential_data.txt", "1 1 2 3\n")
        f.writestr("data/toys/sequential_data.txt", "1 4 5 6\n")
    raw = tmp_path / "raw"
    moved = download.download_and_extract(archive.as_uri(), "P5_data.zip", raw, "data")
    assert moved == ["beauty", "toys"]
    assert (raw / "beauty" / "sequential_data.txt").read_text() == "1 1 2 3\n"
    assert sorted(p.name for p in raw.iterdir()) == ["beauty", "toys"]  # the temporary folder is gone
