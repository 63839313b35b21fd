import pytest
import torch

from modules.embedding import ItemIdEmbedder

CATALOGUE = torch.tensor([[3, 200, 17, 0], [3, 200, 17, 1], [255, 255, 255, 10], [0, 0, 0, 0]])  # [4 items, T]


def indexed(catalogue=CATALOGUE, d_model=4):
    embedder = ItemIdEmbedder(len(catalogue), codebook_size=256, d_model=d_model)
    embedder.index(catalogue)
    return embedder


def test_each_item_gets_its_own_row_wherever_it_appears():
    embedder = indexed()
    history = CATALOGUE[torch.tensor([[0, 1, 2], [2, 0, 3]])]  # [B 2, L 3, T]
    rows = embedder.rows(history)  # [2, 3]
    assert rows.shape == (2, 3)
    assert rows[0, 0] == rows[1, 1] and rows[0, 2] == rows[1, 0]
    assert set(embedder.rows(CATALOGUE).tolist()) == {0, 1, 2, 3}  # IDs one code apart: different rows


def test_padding_and_unknown_ids_read_the_zero_row():
    embedder = indexed()
    torch.nn.init.normal_(embedder.emb.weight)
    with torch.no_grad():
        embedder.emb.weight[embedder.n_items] = 0  # nn.Embedding's padding_idx row, as reset_parameters leaves it
    ids = torch.tensor([[-1, -1, -1, -1], [3, 200, 17, 2], [0, 0, 0, 1], [255, 255, 255, 255]])
    assert embedder.rows(ids).tolist() == [4, 4, 4, 4]
    assert torch.equal(embedder(ids), torch.zeros(4, 4))
    assert embedder(CATALOGUE).abs().sum(dim=1).min() > 0


def test_the_table_starts_at_zero_after_reset():
    embedder = indexed()
    embedder.reset_parameters()
    assert torch.equal(embedder(CATALOGUE), torch.zeros(4, 4))


def test_a_loaded_state_dict_brings_the_catalogue():
    embedder = indexed()
    torch.nn.init.normal_(embedder.emb.weight)
    fresh = ItemIdEmbedder(len(CATALOGUE), codebook_size=256, d_model=4)
    with pytest.raises(RuntimeError, match="index"):
        fresh(CATALOGUE)  # without the catalogue every item would silently read the zero row
    fresh.load_state_dict(embedder.state_dict())
    torch.testing.assert_close(fresh(CATALOGUE[[2, 0]]), embedder(CATALOGUE[[2, 0]]), rtol=0, atol=0)


def test_index_refuses_a_catalogue_it_cannot_tell_apart():
    with pytest.raises(ValueError, match="share a semantic ID"):
        ItemIdEmbedder(2, 256, 4).index(CATALOGUE[[1, 1]])
    with pytest.raises(ValueError, match="3 items"):
        ItemIdEmbedder(4, 256, 4).index(CATALOGUE[:3])


def test_compiled_training_reads_the_rows_eager_evaluation_reads():
    # With train.compile_model the training forward is compiled and beam search is not: both must find
    # the same rows.
    g = torch.Generator().manual_seed(1)
    catalogue = torch.randint(0, 256, (500, 4), generator=g).unique(dim=0)
    embedder = indexed(catalogue)
    codes = catalogue[torch.randint(0, len(catalogue), (64, 20), generator=g)]
    codes[:, 15:] = -1
    torch.testing.assert_close(torch.compile(embedder.rows)(codes), embedder.rows(codes), rtol=0, atol=0)
