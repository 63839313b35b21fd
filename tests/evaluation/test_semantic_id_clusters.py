import json

import pytest
import torch

from evaluation.semantic_id_clusters import PICTURE, STATS, prefix_stats, stats_table, write_cluster_report
from modules.tokenizer import SemanticIdTokenizer


def test_prefix_stats_count_groups_at_every_prefix_length():
    codes = torch.tensor([[0, 1, 2], [0, 1, 2], [0, 2, 0], [3, 0, 0]])
    rows = prefix_stats(codes)
    assert [r["prefixes_used"] for r in rows] == [2, 3, 3]
    assert [r["largest_group"] for r in rows] == [3, 2, 2]
    assert [r["items_sharing_prefix"] for r in rows] == [0.75, 0.5, 0.5]


def test_report_writes_a_picture_and_the_numbers_of_the_collision_tokens(tmp_path):
    codes = torch.tensor([[0, 1, 2], [0, 1, 2], [0, 2, 0], [3, 0, 0]])
    tokenizer = SemanticIdTokenizer.from_codes(codes, codebook_size=4)  # items 0 and 1 get collision tokens 0 and 1
    report = write_cluster_report(tokenizer, ["a", "b", "", "d"], tmp_path, "toy")
    assert (tmp_path / PICTURE).read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / STATS).read_text())
    assert saved["max_collision_token"] == 1 and saved["items"] == 4
    assert saved["prefixes"] == prefix_stats(codes)
    assert report["picture"] == str(tmp_path / PICTURE)
    assert "| 1 | 2 | 3 | 75.0% |" in stats_table(saved)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([PICTURE, STATS])  # no temporary file left behind


def test_report_refuses_titles_of_another_catalogue(tmp_path):
    tokenizer = SemanticIdTokenizer.from_codes(torch.zeros(3, 2, dtype=torch.long) + torch.arange(3)[:, None], 4)
    with pytest.raises(ValueError, match="2 titles for 3"):
        write_cluster_report(tokenizer, ["a", "b"], tmp_path, "toy")
    assert not list(tmp_path.iterdir())
