"""A benchmark's rows, written whole or not at all, where its --json asked for them."""
from __future__ import annotations

import json
from typing import Any

from runtime.atomic_io import atomic_write_text


def write_json(path: str | None, rows: Any) -> None:
    """Write `rows` as indented JSON to `path` (atomically: an interrupted run leaves no half file); None: nothing."""
    if path:
        atomic_write_text(json.dumps(rows, indent=1) + "\n", path)
