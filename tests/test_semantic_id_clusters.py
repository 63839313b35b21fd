import json

import torch

from modules.tokenizer import SemanticIdTokenizer
from studies.semantic_id_clusters import main
from tests.fixtures import write_amazon_raw


def test_picture_and_json_of_a_tokenizer(tmp_path, capsys):
    root = write_amazon_raw(tmp_path / "amazon", n_users=30, n_items=40)
    codes = torch.randint(0, 4, (40, 3), generator=torch.Generator().manual_seed(0))
    run = tmp_path / "rqvae" / "amazon-beauty"
    SemanticIdTokenizer.from_codes(codes, codebook_size=8).save(run / "semantic_ids.pt")
    stats = main([str(run), "--root", str(root), "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "c.png"),
                  "--json", str(tmp_path / "s.json")])
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "s.json").read_text()) == stats
    assert stats["prefixes"][0]["prefixes_used"] == len(set(codes[:, 0].tolist()))
    assert "| 3 |" in capsys.readouterr().out
