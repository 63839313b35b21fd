"""The two ranking protocols, named in every record (a light module: the JSON-reading studies tools import
it without loading torch or the model):
  "plain"            the paper's (TIGER, Sec. 4): any catalogue item may be ranked, the user's own
                     history included. Compare with the paper on this one only.
  "history_skipped"  the items of the user's history (the model's input, its last max_seq_len items) are
                     never ranked; the other items keep their order. In Amazon and MovieLens a user never
                     meets an item twice, so this is a filter a deployed system would apply.
"""
from __future__ import annotations

PROTOCOLS = ("plain", "history_skipped")


def protocol_name(exclude_history: bool) -> str:
    """train.eval_exclude_history -> the protocol it names (the one validation selects best.pt on)."""
    return "history_skipped" if exclude_history else "plain"
