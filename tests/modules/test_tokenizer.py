import pytest
import torch

from runtime.errors import CheckpointError
from modules.rqvae import RqVae
from modules.tokenizer import SemanticIdTokenizer, collision_stats, collision_tokens


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _planted_codes():
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 50, (200, 3), generator=g)
    # Plant duplicates: item 7 is copied to 5 later items, item 3 to 2.
    codes[[20, 40, 41, 90, 199]] = codes[7].clone()
    codes[[100, 150]] = codes[3].clone()
    return codes


def test_collision_token_makes_every_id_unique_in_item_order():
    codes = _planted_codes()
    tok = SemanticIdTokenizer.from_codes(codes, codebook_size=64)
    assert tok.sem_ids.shape == (200, 4) and tok.n_codebooks == 3 and tok.codebook_size == 64
    assert torch.equal(tok.sem_ids[:, :3], codes)
    assert torch.unique(tok.sem_ids, dim=0).shape[0] == 200
    group = [7, 20, 40, 41, 90, 199]
    assert tok.sem_ids[group, 3].tolist() == [0, 1, 2, 3, 4, 5]
    assert tok.sem_ids[[3, 100, 150], 3].tolist() == [0, 1, 2]
    # Brute-force oracle: the token counts earlier items with the same codes.
    for i in range(200):
        assert tok.sem_ids[i, 3] == (codes[:i] == codes[i]).all(1).sum()


def test_collision_stats_on_planted_duplicates():
    codes = _planted_codes()
    stats = collision_stats(codes)
    n_unique = torch.unique(codes, dim=0).shape[0]
    colliding = sum(int((codes == row).all(1).sum() > 1) for row in codes)
    assert stats["collision_share"] == pytest.approx(colliding / 200)
    assert colliding >= 9  # the planted groups (random ones may add more)
    assert stats["largest_collision_group"] == 6
    assert stats["id_entropy_bits"] < stats["id_entropy_max_bits"]
    unique = torch.arange(12).reshape(4, 3)
    assert collision_stats(unique) == pytest.approx(
        {"collision_share": 0.0, "largest_collision_group": 1, "id_entropy_bits": 2.0, "id_entropy_max_bits": 2.0}
    )
    assert n_unique < 200


def test_collision_group_larger_than_codebook_is_an_error():
    codes = torch.zeros(9, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="9 items share one 3-code prefix"):
        SemanticIdTokenizer.from_codes(codes, codebook_size=8)
    assert collision_tokens(codes).tolist() == list(range(9))


def test_save_load_roundtrip(tmp_path):
    tok = SemanticIdTokenizer.from_codes(_planted_codes(), codebook_size=64)
    tok.save(tmp_path / "semantic_ids.pt")
    loaded = SemanticIdTokenizer.load(tmp_path / "semantic_ids.pt")
    assert torch.equal(loaded.sem_ids, tok.sem_ids) and loaded.codebook_size == 64 and loaded.n_codebooks == 3
    raw = torch.load(tmp_path / "semantic_ids.pt", weights_only=True)
    assert set(raw) == {"sem_ids", "codebook_size"}
    torch.save({"other": 1}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="bad.pt is not a saved SemanticIdTokenizer"):
        SemanticIdTokenizer.load(tmp_path / "bad.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "semantic_ids.pt").read_bytes()[:200])
    with pytest.raises(CheckpointError, match="cut.pt is truncated or corrupted"):
        SemanticIdTokenizer.load(tmp_path / "cut.pt")


def test_from_rqvae_runs_the_model_over_the_catalogue_in_batches():
    torch.manual_seed(0)
    model = RqVae(input_dim=12, hidden_dims=(8,), latent_dim=4, codebook_size=16, n_layers=3,
                  commitment_weight=0.25, forward_mode="ste")
    features = torch.randn(70, 12)
    model.init_codebooks(features)
    tok = SemanticIdTokenizer.from_rqvae(model, features, batch_size=16)
    assert torch.equal(tok.sem_ids[:, :3], model.semantic_ids(features))
    assert torch.unique(tok.sem_ids, dim=0).shape[0] == 70
    assert model.training  # restored


def test_trie_holds_exactly_the_catalogue_ids():
    tok = SemanticIdTokenizer.from_codes(_planted_codes(), codebook_size=64)
    trie = tok.trie()
    assert trie.n_items == 200 and trie.depth == 4
    assert trie.codebook_size == 64  # the model's head size, even where the catalogue uses fewer codes
    # Walking each ID down the trie ends at its item id.
    node = torch.zeros(200, dtype=torch.long)
    for d in range(4):
        node = trie.next_nodes(d, node, tok.sem_ids[:, d])
    assert torch.equal(node, torch.arange(200))


def test_bad_sem_ids_are_rejected():
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        SemanticIdTokenizer(torch.tensor([[1, 2, 9, 0]]), codebook_size=8)
