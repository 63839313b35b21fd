import math

from data.item_text import TEXT_TEMPLATE, item_text, join_categories


def test_all_fields_follow_the_template():
    text = item_text("nail lacquer", "OPI", [["Beauty", "Makeup", "Nails"]], 12.5)
    assert text == TEXT_TEMPLATE.format(title="nail lacquer", brand="OPI", categories="Beauty, Makeup, Nails",
                                        price="12.50")


def test_absent_fields_are_left_out_not_written_as_nan():
    assert item_text("balm", None, None, None) == "Title: balm"
    assert item_text("balm", "Unknown", [], float("nan")) == "Title: balm"
    assert item_text(None, "OPI", None, 3) == "Brand: OPI; Price: 3.00"
    assert item_text(float("nan"), "  ", None, "") == ""
    for text in [item_text("x", "Unknown", None, math.nan), item_text(None, None, [["Beauty"]], None)]:
        assert "nan" not in text.lower() and "unknown" not in text.lower() and "none" not in text.lower()


def test_category_paths_joined_once_in_order():
    paths = [["Beauty", "Makeup", "Nails"], ["Beauty", "Tools & Accessories", "Nails"]]
    assert join_categories(paths) == "Beauty, Makeup, Nails, Tools & Accessories"
    assert join_categories(paths) == join_categories([list(p) for p in paths])  # deterministic
    assert join_categories(None) is None and join_categories([[]]) is None
