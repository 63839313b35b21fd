"""The text an item's sentence embedding is computed from.

TIGER (Sec. 4.1) encodes each item's content features (title, price, brand,
category) with a sentence encoder. Every field is optional: an absent field is
left out of the text instead of being written as "nan" or "Unknown".
"""
from __future__ import annotations

import math
from typing import Any

# Part of the embedding cache key: change it and cached embeddings are rebuilt.
TEXT_TEMPLATE = "Title: {title}; Brand: {brand}; Categories: {categories}; Price: {price}"


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str) and value.strip().lower() in ("", "nan", "none", "unknown"):
        return True
    return False


def join_categories(categories: Any) -> str | None:
    """Amazon 2014 `categories` is a list of category paths, e.g.
    [['Beauty', 'Makeup', 'Nails'], ['Beauty', 'Tools']] -> 'Beauty, Makeup, Nails, Tools':
    every distinct name once, in the order the paths list them (deterministic)."""
    if is_missing(categories) or not isinstance(categories, (list, tuple)):
        return None
    names: list[str] = []
    for path in categories:
        for name in ([path] if isinstance(path, str) else path):
            if not is_missing(name) and str(name).strip() not in names:
                names.append(str(name).strip())
    return ", ".join(names) or None


def format_price(price: Any) -> str | None:
    if is_missing(price):
        return None
    if isinstance(price, (int, float)):
        return f"{float(price):.2f}"
    return str(price).strip()


def item_text(title: Any = None, brand: Any = None, categories: Any = None, price: Any = None) -> str:
    """'Title: ...; Brand: ...; Categories: ...; Price: ...' with absent fields left out."""
    fields = {
        "Title": None if is_missing(title) else str(title).strip(),
        "Brand": None if is_missing(brand) else str(brand).strip(),
        "Categories": join_categories(categories),
        "Price": format_price(price),
    }
    return "; ".join(f"{name}: {value}" for name, value in fields.items() if value is not None)
