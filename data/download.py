"""Raw files: looked for on disk first; only when some are missing is the public zip release
fetched and its data folders moved into `<root>/raw/`.

Nothing is written under the data root before a download has succeeded: the archive goes to
the system's temporary folder, its digest and format are checked there, and only then are
its folders moved in. Without network, the error names every missing file, the folder it was
looked for in, the binding that sets the root, and the manual step (where to unzip what).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import socket
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

from runtime.errors import DataError, MissingFileError, UserError

ROOT_BINDING = "train.dataset_folder (python -m data: --root)"
STALL_TIMEOUT_S = 60  # seconds a connection or a read may wait for the server before the download fails


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


def missing_files(folder: Path, files: Sequence[str]) -> list[str]:
    return [name for name in files if not (Path(folder) / name).is_file()]


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

    The archive is fetched into the system's temporary folder: a failed or refused download
    leaves nothing under `raw_dir`, not even the folder. Extraction then happens in a temporary
    folder next to the destination, and each data folder is moved in with one rename, so an
    interrupted extraction leaves no half-written raw folder behind."""
    raw_dir = Path(raw_dir)
    download_dir = Path(tempfile.mkdtemp(prefix="tiger-download-"))
    try:
        previous_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(STALL_TIMEOUT_S)  # a network that drops packets fails instead of hanging
        try:
            if md5_url is not None and (published := published_md5(md5_url, download_dir)) is not None:
                if expected_md5 is not None and published != expected_md5:
                    raise DataError(f"{md5_url} publishes {published} but the code expects {expected_md5} for {filename}: "
                                    "the archive was re-released or the digest in the code is out of date; check the "
                                    "source, then update the digest (data/movielens.py GROUPLENS_MD5)")
                expected_md5 = published
            archive = download_url(url, str(download_dir), filename=filename)
        except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, refused connections
            raise MissingFileError(f"downloading {filename} from {url} failed ({getattr(e, 'reason', e)})") from e
        finally:
            socket.setdefaulttimeout(previous_timeout)
        if expected_md5 is not None and (digest := file_md5(archive)) != expected_md5:
            raise DataError(f"{url}: the download's MD5 is {digest}, the published one is {expected_md5}; "
                            "the file was deleted (a broken or tampered download). Try again later.")
        if not zipfile.is_zipfile(archive):  # e.g. an HTML page instead of the file
            raise DataError(f"{url}: the download is not a zip archive (the file was deleted)")
        raw_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".download.", dir=raw_dir))  # same file system: renames
        try:
            extract_zip(archive, str(staging))
            source = staging / folder_in_zip
            if not source.is_dir():
                raise DataError(f"{url}: the archive has no folder '{folder_in_zip}'")
            moved = []
            for folder in sorted(p for p in source.iterdir() if p.is_dir()):
                if not (raw_dir / folder.name).exists():
                    os.replace(folder, raw_dir / folder.name)
                    moved.append(folder.name)
            return moved
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        shutil.rmtree(download_dir, ignore_errors=True)


def ensure_raw_files(folder: Path, files: Sequence[str], root: str | Path, url: str, filename: str,
                     manual_step: str, folder_in_zip: str = "", expected_md5: str | None = None,
                     md5_url: str | None = None) -> Path:
    """Return `folder` once it holds every one of `files`: they are looked for first, and the
    release at `url` is downloaded only when some are missing. Any failure is a MissingFileError
    (two lines): what is missing where, why it could not be fetched, then `manual_step`."""
    folder = Path(folder)
    missing = missing_files(folder, files)
    if not missing:
        return folder
    where = f"{folder} lacks {', '.join(missing)} (data root {str(root)!r}, set by {ROOT_BINDING})"
    try:
        download_and_extract(url, filename, folder.parent, folder_in_zip, expected_md5, md5_url)
    except UserError as e:
        raise MissingFileError(f"{where}, and {e}.\nOffline: {manual_step}.") from e
    still_missing = missing_files(folder, files)
    if still_missing:
        raise MissingFileError(f"{folder} still lacks {', '.join(still_missing)} after downloading {url}.\n"
                               f"By hand: {manual_step}.")
    return folder
