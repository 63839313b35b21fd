"""Fetch a public zip release and move its data folders into `<root>/raw/`.

Only called when raw files are missing; present files never touch the network.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path


def download_url(url: str, folder: str, log: bool = True, filename: str | None = None) -> str:
    """torch-geometric's downloader; imported only when a download really happens
    (importing torch_geometric costs seconds at every start otherwise)."""
    from torch_geometric.data import download_url as pyg_download_url

    return pyg_download_url(url, folder, log=log, filename=filename)


def extract_zip(path: str, folder: str) -> None:
    # zipfile (under torch-geometric's helper) drops absolute paths and '..' from member
    # names: nothing lands outside `folder`.
    from torch_geometric.data import extract_zip as pyg_extract_zip

    pyg_extract_zip(path, folder, log=False)


def file_md5(path: str | Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def published_md5(url: str, folder: Path) -> str | None:
    """The digest in the checksum file at `url` (GroupLens' `<archive>.md5`: 'MD5 (ml-32m.zip) = <hex>'
    or '<hex>  ml-32m.zip'), or None, with a warning, when it cannot be fetched or holds no one digest."""
    try:
        text = Path(download_url(url, str(folder), log=False, filename=url.rsplit("/", 1)[-1])).read_text(errors="replace")
    except Exception as e:  # unreachable, HTTP error: the digest in the code still applies
        print(f"could not fetch {url} ({type(e).__name__}: {e})", file=sys.stderr)
        return None
    digests = {d.lower() for d in re.findall(r"\b[0-9a-fA-F]{32}\b", text)}
    if len(digests) != 1:
        print(f"{url} holds no single MD5 digest: {text[:80]!r}", file=sys.stderr)
        return None
    return digests.pop()


def download_and_extract(url: str, filename: str, raw_dir: Path, folder_in_zip: str = "",
                         expected_md5: str | None = None, md5_url: str | None = None) -> list[str]:
    """Download `url` as `filename`, extract it and move every folder found under
    `folder_in_zip` inside the archive to `raw_dir/<folder>` (existing folders are
    left alone). Returns the folder names moved in. With `expected_md5` (the digest the source
    publishes) a download that does not match is deleted and refused before anything is extracted.
    With `md5_url` (the source's checksum file) that file is fetched first: its digest is the
    expected one when `expected_md5` is None, and one that differs from `expected_md5` is refused
    (a re-released archive: the digest in the code is out of date). Unreachable: `expected_md5` alone.

    Extraction happens in a temporary folder next to the destination, and each
    data folder is moved in with one rename, so an interrupted download leaves no
    half-written raw folder behind."""
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download.", dir=raw_dir))
    try:
        if md5_url is not None and (published := published_md5(md5_url, tmp)) is not None:
            if expected_md5 is not None and published != expected_md5:
                raise ValueError(f"{md5_url} publishes {published} but the code expects {expected_md5} for {filename}: "
                                 "the archive was re-released or the digest in the code is out of date; check the "
                                 "source, then update the digest (data/movielens.py GROUPLENS_MD5)")
            expected_md5 = published
        archive = download_url(url, str(tmp), filename=filename)
        if expected_md5 is not None and (digest := file_md5(archive)) != expected_md5:
            raise ValueError(f"{url}: the download's MD5 is {digest}, the published one is {expected_md5}; "
                             "the file was deleted (a broken or tampered download). Try again later.")
        extract_zip(archive, str(tmp / "extracted"))
        source = tmp / "extracted" / folder_in_zip
        if not source.is_dir():
            raise FileNotFoundError(f"{url}: the archive has no folder '{folder_in_zip}'")
        moved = []
        for folder in sorted(p for p in source.iterdir() if p.is_dir()):
            if not (raw_dir / folder.name).exists():
                os.replace(folder, raw_dir / folder.name)
                moved.append(folder.name)
        return moved
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
