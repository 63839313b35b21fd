import gzip
import io
import zipfile

import pytest
import torch_geometric.data

import data.download as download
from data.amazon import P5_URL, RAW_FILES, ensure_raw, load_amazon, read_meta
from data.item_text import item_text
from runtime.errors import MissingFileError
from tests.fixtures import amazon_meta, amazon_sequences, write_amazon_raw


def test_sequences_parsed_in_order_with_ids_shifted_to_zero(tmp_path):
    root = write_amazon_raw(tmp_path, n_users=12, n_items=20, seed=3)
    raw = load_amazon(root, "beauty")
    expected = amazon_sequences(12, 20, seed=3)
    assert raw.n_users == 12 and raw.n_items == 20
    assert raw.interactions["user"].to_list() == [u for u, s in enumerate(expected) for _ in s]
    assert raw.interactions["item"].to_list() == [i - 1 for s in expected for i in s]


def test_metadata_joined_by_asin_and_missing_fields_left_out(tmp_path):
    root = write_amazon_raw(tmp_path, n_items=40)
    raw = load_amazon(root, "beauty")
    meta = amazon_meta(40, seed=0)  # written to disk in reverse order: the join must go by ASIN
    for item in range(40):
        row = meta[item]
        assert raw.texts[item] == item_text(row.get("title"), row.get("brand"), row.get("categories"), row.get("price"))
        assert raw.titles[item] == row.get("title", "")
    assert raw.texts[2] == "Title: product 3 brush; Brand: brand3; Categories: Beauty, Skin Care"
    assert raw.texts[0] == "Title: product 1 polish"  # brand 'Unknown', no categories, no price
    assert raw.texts[6] == "Categories: Beauty, Skin Care"  # no title
    assert "Price: " in raw.texts[3] and "Brand" not in raw.texts[3]


def test_malformed_meta_line_names_file_and_line(tmp_path):
    root = write_amazon_raw(tmp_path)
    path = root / "raw" / "beauty" / "meta.json.gz"
    lines = gzip.open(path, "rt").read().splitlines()
    lines[4] = "{'asin': 'B000000036', 'title': __import__('os').system('echo pwned')}"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"meta\.json\.gz:5: malformed"):
        read_meta(path)
    lines[4] = "{'asin': 'B000000036', 'title': 'unterminated"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"meta\.json\.gz:5: malformed"):
        load_amazon(root, "beauty")


def fake_p5_zip(source_root):
    """A P5_data.zip look-alike: data/<split>/<files> taken from a fixture."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for split in ("beauty", "toys"):
            for name in RAW_FILES:
                z.write(source_root / "raw" / split / name, f"data/{split}/{name}")
    return buffer.getvalue()


def test_download_when_missing_lands_files(tmp_path, monkeypatch):
    source = write_amazon_raw(tmp_path / "source", "beauty", seed=5)
    write_amazon_raw(tmp_path / "source", "toys", seed=6)
    payload = fake_p5_zip(source)
    calls = []

    def fake_download_url(url, folder, log=True, filename=None):
        calls.append(url)
        path = f"{folder}/{filename}"
        open(path, "wb").write(payload)
        return path

    monkeypatch.setattr(download, "download_url", fake_download_url)
    root = tmp_path / "root"
    folder = ensure_raw(root, "beauty")
    assert calls == [P5_URL]
    assert folder == root / "raw" / "beauty"
    for name in RAW_FILES:
        assert (folder / name).read_bytes() == (source / "raw" / "beauty" / name).read_bytes()
    assert (root / "raw" / "toys" / "sequential_data.txt").is_file()  # other splits kept, no second download
    assert sorted(p.name for p in (root / "raw").iterdir()) == ["beauty", "toys"]  # no temp folder or zip left
    assert load_amazon(root, "beauty").n_users == 30


def test_no_network_when_files_exist(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network touched")

    monkeypatch.setattr(download, "download_url", no_network)
    monkeypatch.setattr(torch_geometric.data, "download_url", no_network)
    root = write_amazon_raw(tmp_path)
    assert load_amazon(root, "beauty").n_items == 40


def test_failed_download_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(url, folder, log=True, filename=None):
        open(f"{folder}/{filename}", "wb").write(b"not a zip")
        return f"{folder}/{filename}"

    monkeypatch.setattr(download, "download_url", broken)
    with pytest.raises(MissingFileError, match=r"the download is not a zip archive.*\nOffline: unzip P5_data\.zip"):
        ensure_raw(tmp_path, "beauty")
    assert list(tmp_path.iterdir()) == []  # not even raw/: nothing is created before a download succeeded
