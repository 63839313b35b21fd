import torch
import torch.nn.functional as F

from modules.model import EncoderDecoderRetrievalModel


def tiny_model(**kw):
    torch.manual_seed(0)
    args = dict(n_levels=4, codebook_size=5, max_history=6, n_user_buckets=7, d_model=32, n_heads=2,
                d_head=16, ff_dim=64, n_encoder_layers=2, n_decoder_layers=2, dropout=0.1)
    return EncoderDecoderRetrievalModel(**{**args, **kw})


CATALOGUE = torch.cartesian_prod(*[torch.arange(5)] * 4)  # [625 items, T]: every ID of the tiny model's codebooks


def with_catalogue(model):
    model.item_emb.index(CATALOGUE)
    return model


def test_padding_does_not_change_outputs():
    model = tiny_model().eval()
    g = torch.Generator().manual_seed(1)
    history = torch.randint(0, 5, (3, 3, 4), generator=g)
    history[1, 2] = -1  # a user with only two items
    target = torch.randint(0, 5, (3, 4), generator=g)
    users = torch.tensor([0, 1, 2])
    padded = torch.cat([history, torch.full((3, 3, 4), -1)], dim=1)  # three more padding items
    torch.testing.assert_close(model(users, padded, target), model(users, history, target), atol=1e-5, rtol=1e-5)


def test_cached_decoding_equals_teacher_forcing():
    model = tiny_model().eval()
    g = torch.Generator().manual_seed(2)
    history = torch.randint(0, 5, (2, 6, 4), generator=g)
    target = torch.randint(0, 5, (2, 4), generator=g)
    users = torch.tensor([3, 4])
    full = model(users, history, target)
    memory, padding = model.encode(users, history)
    cache, tokens = model.new_cache(), model.decoder_input(target)
    steps = [model.decode(tokens[:, t:t + 1], memory if t == 0 else None, padding, cache, start=t) for t in range(4)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_loss_is_cross_entropy_over_each_levels_codes():
    model = tiny_model().eval()
    target = torch.tensor([[1, 4, 0, 2]])
    logits = model(torch.tensor([0]), torch.randint(0, 5, (1, 2, 4)), target)
    assert logits.shape == (1, 4, 5)  # each position scores only its level's 5 codes
    manual = -torch.stack([F.log_softmax(logits[0, t], -1)[target[0, t]] for t in range(4)]).mean()
    torch.testing.assert_close(model.loss(logits, target), manual)


def test_recency_positions_count_back_from_the_most_recent_item():
    from modules.model import recency_positions

    # items as [L, T] codes; -1 rows are padding (right-padded, oldest first)
    history = torch.tensor([[[5, 1], [6, 2], [7, 3], [-1, -1]],
                            [[8, 0], [-1, -1], [-1, -1], [-1, -1]]])
    assert recency_positions(history).tolist() == [[2, 1, 0, 0], [0, 0, 0, 0]]


def test_the_most_recent_item_has_the_same_position_whatever_the_history_length():
    from modules.model import EncoderDecoderRetrievalModel

    torch.manual_seed(0)
    model = EncoderDecoderRetrievalModel(n_levels=2, codebook_size=8, max_history=5, n_user_buckets=4, d_model=16,
                                         n_heads=2, d_head=8, ff_dim=32, n_encoder_layers=1, n_decoder_layers=1,
                                         dropout=0.0).eval()
    # Zero every attention output projection: each token's encoder output then depends only on its own
    # input embedding (token + position + level), so it reveals which position embedding it got.
    for name, p in model.named_parameters():
        if "to_out" in name:
            torch.nn.init.zeros_(p)
    short = torch.tensor([[[3, 1], [-1, -1], [-1, -1]]])
    long = torch.tensor([[[2, 2], [4, 0], [3, 1]]])
    users = torch.tensor([0])
    mem_short, _ = model.encode(users, short)
    mem_long, _ = model.encode(users, long)
    # token 0 is the user; tokens 1-2 are the short history's only item, tokens 5-6 the long one's last
    torch.testing.assert_close(mem_short[:, 1:3], mem_long[:, 5:7])


def test_item_tokens_start_as_the_papers_encoder():
    # n_items > 0 adds a zero-initialised table: before training, the outputs are those of the same
    # weights without it.
    model = with_catalogue(tiny_model(n_items=len(CATALOGUE))).eval()
    g = torch.Generator().manual_seed(5)
    history = torch.randint(0, 5, (2, 4, 4), generator=g)
    target = torch.randint(0, 5, (2, 4), generator=g)
    users = torch.tensor([0, 1])
    with_items = model(users, history, target)
    model.item_emb = None
    torch.testing.assert_close(with_items, model(users, history, target))


def test_item_tokens_reach_the_output_and_ignore_padding():
    model = with_catalogue(tiny_model(n_items=len(CATALOGUE))).eval()
    g = torch.Generator().manual_seed(6)
    history = torch.randint(0, 5, (2, 3, 4), generator=g)
    history[0, 2] = -1
    target = torch.randint(0, 5, (2, 4), generator=g)
    users = torch.tensor([0, 1])
    before = model(users, history, target)
    torch.nn.init.normal_(model.item_emb.emb.weight, generator=g)
    after = model(users, history, target)
    assert (after - before).abs().max() > 1e-2
    padded = torch.cat([history, torch.full((2, 2, 4), -1)], dim=1)
    torch.testing.assert_close(model(users, padded, target), after, atol=1e-5, rtol=1e-5)


def test_item_token_dropout_hides_item_tokens_in_training_only():
    g = torch.Generator().manual_seed(7)
    history = torch.randint(0, 5, (2, 3, 4), generator=g)
    target = torch.randint(0, 5, (2, 4), generator=g)
    users = torch.tensor([0, 1])
    model = with_catalogue(tiny_model(n_items=len(CATALOGUE), item_token_dropout=1.0, dropout=0.0))
    torch.nn.init.normal_(model.item_emb.emb.weight, generator=g)
    with_items_eval = model.eval()(users, history, target)
    hidden_train = model.train()(users, history, target)
    model.item_emb = None
    without_items = model(users, history, target)
    torch.testing.assert_close(hidden_train, without_items)  # p = 1: every item token dropped in training
    assert (with_items_eval - without_items).abs().max() > 1e-2  # evaluation always reads them


def successor_model(**kw):
    model = with_catalogue(tiny_model(n_items=len(CATALOGUE), successor_token=True, **kw))
    torch.nn.init.normal_(model.item_emb.emb.weight, generator=torch.Generator().manual_seed(8))
    return model


def row(codes):  # [T] one item's codes -> its row of the tiny catalogue's tables (base-5 number)
    return int(sum(c * 5 ** (3 - i) for i, c in enumerate(codes)))


def test_successor_token_starts_as_the_recipes_model():
    model = successor_model().eval()  # item tokens trained (random), successor table at its zero start
    g = torch.Generator().manual_seed(9)
    history, target, users = torch.randint(0, 5, (2, 4, 4), generator=g), torch.randint(0, 5, (2, 4), generator=g), torch.tensor([0, 1])
    with_successor = model(users, history, target)
    model.successor_emb = None
    torch.testing.assert_close(with_successor, model(users, history, target))


def test_successor_token_reads_the_most_recent_item_only():
    model = successor_model().eval()
    g = torch.Generator().manual_seed(10)
    history = torch.randint(0, 5, (2, 3, 4), generator=g)
    history[0, 2] = -1  # user 0's most recent item is its second
    target, users = torch.randint(0, 5, (2, 4), generator=g), torch.tensor([0, 1])
    before = model(users, history, target)
    table = model.successor_emb.weight
    others = torch.ones(len(table), dtype=torch.bool)
    others[[row(history[0, 1]), row(history[1, 2])]] = False
    with torch.no_grad():
        table[others] = torch.randn(int(others.sum()), table.shape[1], generator=g)  # every other item's vector
    torch.testing.assert_close(model(users, history, target), before)  # changes nothing
    with torch.no_grad():
        table[row(history[0, 1])] = torch.randn(table.shape[1], generator=g)
    after = model(users, history, target)
    assert (after[0] - before[0]).abs().max() > 1e-2 and torch.equal(after[1], before[1])
    padded = torch.cat([history, torch.full((2, 2, 4), -1)], dim=1)  # more padding: the same most recent item
    torch.testing.assert_close(model(users, padded, target), after, atol=1e-5, rtol=1e-5)


def test_successor_token_without_a_user_is_read_not_masked():
    model = successor_model().eval()
    g = torch.Generator().manual_seed(11)
    history, target = torch.randint(0, 5, (1, 3, 4), generator=g), torch.randint(0, 5, (1, 4), generator=g)
    no_user = torch.tensor([-1])
    before = model(no_user, history, target)
    with torch.no_grad():
        model.successor_emb.weight[row(history[0, 2])] = torch.randn(model.successor_emb.weight.shape[1], generator=g)
    assert (model(no_user, history, target) - before).abs().max() > 1e-2


def test_successor_token_dropout_hides_it_in_training_only():
    g = torch.Generator().manual_seed(12)
    history, target, users = torch.randint(0, 5, (2, 3, 4), generator=g), torch.randint(0, 5, (2, 4), generator=g), torch.tensor([0, 1])
    model = successor_model(item_token_dropout=1.0, dropout=0.0)
    torch.nn.init.normal_(model.successor_emb.weight, generator=g)
    read_in_eval = model.eval()(users, history, target)
    hidden_in_training = model.train()(users, history, target)
    model.successor_emb = model.item_emb = None
    without = model(users, history, target)
    torch.testing.assert_close(hidden_in_training, without)  # p = 1: dropped with every item token
    assert (read_in_eval - without).abs().max() > 1e-2


def test_successor_token_needs_the_catalogue_and_the_per_example_encoder():
    import pytest

    with pytest.raises(ValueError, match="successor_token=True needs n_items > 0"):
        tiny_model(successor_token=True)
    with pytest.raises(ValueError, match="successor_token=True needs n_items > 0"):
        tiny_model(n_items=len(CATALOGUE), successor_token=True, causal_encoder=True)
    assert tiny_model(n_items=len(CATALOGUE), successor_token=True).kwargs["successor_token"] is True
    assert "successor_token" not in tiny_model(n_items=len(CATALOGUE)).kwargs  # old checkpoints still build
