"""Downloaded archives are checked against the digest the source publishes before extraction."""
import hashlib
import zipfile

import pytest

import data.download as download
import data.movielens as movielens
from data.ml1m import load_ml1m
from data.ml32m import load_ml32m
from runtime.errors import MissingFileError
from tests.fixtures import write_ml1m_raw, write_ml32m_raw


GROUPLENS_FIXTURES = {"ml-1m": (write_ml1m_raw, ("ratings.dat", "movies.dat")),
                      "ml-32m": (write_ml32m_raw, ("ratings.csv", "movies.csv"))}


def fake_grouplens(tmp_path, monkeypatch, name: str = "ml-1m", md5_file: str | None = None):
    """A fake <name>.zip and, unless None, its <name>.zip.md5 ('{digest}' is filled in; None: the
    checksum file answers 404) served in place of the network; returns the zip's MD5 and the list
    of fetched file names."""
    write_raw, files = GROUPLENS_FIXTURES[name]
    source = write_raw(tmp_path / "source")
    archive = tmp_path / "served.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for file in files:
            z.write(source / "raw" / name / file, f"{name}/{file}")
    payload = archive.read_bytes()
    digest = hashlib.md5(payload).hexdigest()
    fetched = []

    def fake_download_url(url, folder, log=True, filename=None):
        fetched.append(filename)
        if url.endswith(".md5"):
            if md5_file is None:
                raise OSError("HTTP Error 404: Not Found")
            body = md5_file.format(digest=digest).encode()
        else:
            assert url == movielens.GROUPLENS_URL.format(name=name)
            body = payload
        with open(f"{folder}/{filename}", "wb") as f:
            f.write(body)
        return f"{folder}/{filename}"

    monkeypatch.setattr(download, "download_url", fake_download_url)
    return digest, fetched


def test_published_ml1m_digest_is_the_grouplens_one():
    # GroupLens publishes https://files.grouplens.org/datasets/movielens/ml-1m.zip.md5
    assert movielens.GROUPLENS_MD5["ml-1m"] == "c4d9eecfca2ab87c1945afe126590906"


def test_matching_digest_extracts(tmp_path, monkeypatch):
    digest, _ = fake_grouplens(tmp_path, monkeypatch)
    monkeypatch.setitem(movielens.GROUPLENS_MD5, "ml-1m", digest)
    assert load_ml1m(tmp_path / "root").n_users == 25


def test_mismatching_digest_deletes_the_download_and_names_the_url(tmp_path, monkeypatch):
    fake_grouplens(tmp_path, monkeypatch)  # served bytes differ from the real archive's published MD5
    with pytest.raises(MissingFileError, match=r"ml-1m\.zip: the download's MD5 is [0-9a-f]{32}, the published one is c4d9ee"):
        load_ml1m(tmp_path / "root")
    assert not (tmp_path / "root").exists()  # nothing extracted, not even the folder; the download removed


def test_ml32m_digest_is_pinned():
    # https://files.grouplens.org/datasets/movielens/ml-32m.zip.md5 (the 238,950,008-byte release)
    assert movielens.GROUPLENS_MD5["ml-32m"] == "d472be332d4daa821edc399621853b57"


@pytest.mark.parametrize("md5_file", ["MD5 (ml-32m.zip) = {digest}\n", "{digest}  ml-32m.zip\n"])
def test_published_md5_file_is_fetched_first_and_checked(tmp_path, monkeypatch, md5_file):
    digest, fetched = fake_grouplens(tmp_path, monkeypatch, "ml-32m", md5_file)
    monkeypatch.setitem(movielens.GROUPLENS_MD5, "ml-32m", digest)
    assert load_ml32m(tmp_path / "root").n_users == 25
    assert fetched == ["ml-32m.zip.md5", "ml-32m.zip"]


def test_published_md5_differing_from_the_code_is_refused_before_downloading(tmp_path, monkeypatch):
    _, fetched = fake_grouplens(tmp_path, monkeypatch, "ml-32m", "MD5 (ml-32m.zip) = " + "ab" * 16)
    with pytest.raises(MissingFileError, match=r"ml-32m\.zip\.md5 publishes (ab){16} but the code expects d472be33"):
        load_ml32m(tmp_path / "root")
    assert fetched == ["ml-32m.zip.md5"]
    assert not (tmp_path / "root").exists()  # refused before anything was created


def test_without_a_digest_in_the_code_the_published_one_is_used(tmp_path, monkeypatch):
    fake_grouplens(tmp_path, monkeypatch, "ml-32m", "MD5 (ml-32m.zip) = " + "cd" * 16)
    monkeypatch.setitem(movielens.GROUPLENS_MD5, "ml-32m", None)
    with pytest.raises(MissingFileError, match=r"the download's MD5 is [0-9a-f]{32}, the published one is (cd){16}"):
        load_ml32m(tmp_path / "root")
    fake_grouplens(tmp_path, monkeypatch, "ml-32m", "{digest}  ml-32m.zip")  # now the published digest matches
    assert load_ml32m(tmp_path / "root").n_users == 25


def test_unreachable_md5_file_falls_back_to_the_digest_in_the_code(tmp_path, monkeypatch, capsys):
    digest, _ = fake_grouplens(tmp_path, monkeypatch, "ml-32m", None)
    monkeypatch.setitem(movielens.GROUPLENS_MD5, "ml-32m", digest)
    assert load_ml32m(tmp_path / "root").n_users == 25
    assert "could not fetch https://files.grouplens.org/datasets/movielens/ml-32m.zip.md5" in capsys.readouterr().err
    # and the digest in the code is still enforced
    (tmp_path / "again").mkdir()
    fake_grouplens(tmp_path / "again", monkeypatch, "ml-32m", None)
    monkeypatch.setitem(movielens.GROUPLENS_MD5, "ml-32m", "d472be332d4daa821edc399621853b57")
    with pytest.raises(MissingFileError, match=r"the published one is d472be33"):
        load_ml32m(tmp_path / "again" / "root")


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
