"""Fetch a public zip release and move its data folders into `<root>/raw/`.

Only called when raw files are missing; present files never touch the network.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from torch_geometric.data import download_url, extract_zip


def download_and_extract(url: str, filename: str, raw_dir: Path, folder_in_zip: str = "") -> list[str]:
    """Download `url` as `filename`, extract it and move every folder found under
    `folder_in_zip` inside the archive to `raw_dir/<folder>` (existing folders are
    left alone). Returns the folder names moved in.

    Extraction happens in a temporary folder next to the destination, and each
    data folder is moved in with one rename, so an interrupted download leaves no
    half-written raw folder behind."""
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download.", dir=raw_dir))
    try:
        archive = download_url(url, str(tmp), filename=filename)
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
