import pytest
import torch

from data.processed import SeqData
from data.splits import gather_histories
from data.batching import (ResidentExamples, crop_histories, data_batch, length_bucketed_batches, micro_batches,
                           sem_id_batch, trim_history)
from modules.model import EncoderDecoderRetrievalModel
from modules.tokenizer import SemanticIdTokenizer
from bench.make_movielens_standin import Size, make_standin
from tests.fixtures import toy_train_split


def skewed_lengths(n: int, max_len: int = 20, seed: int = 0) -> torch.Tensor:
    """Mostly short histories, a few long ones (like Amazon's)."""
    g = torch.Generator().manual_seed(seed)
    return (1 + (torch.rand(n, generator=g) ** 3 * max_len).long()).clamp(max=max_len)


def test_bucketed_batches_cover_each_example_once_and_cut_padding():
    lengths = skewed_lengths(10_000)
    lengths[123] = 20  # at least one full-length history
    batches, max_lengths = length_bucketed_batches(lengths, 256, torch.Generator().manual_seed(1), pool_batches=8)
    assert batches.shape == (10_000 // 256, 256)
    assert len(torch.unique(batches)) == batches.numel()  # no example twice in an epoch
    assert torch.equal(max_lengths, lengths[batches].max(dim=1).values)
    # Padded tokens per epoch: bucketed batches trimmed to their max vs random batches trimmed to theirs.
    random = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(1))[:batches.numel()].view_as(batches)
    random_cost = (lengths[random].max(dim=1).values * 256).sum()
    bucketed_cost = (max_lengths * 256).sum()
    real = lengths[batches].sum()
    assert bucketed_cost < 0.6 * random_cost and bucketed_cost >= real
    # A function of the generator's state only (exact resume); another seed, another order.
    again, _ = length_bucketed_batches(lengths, 256, torch.Generator().manual_seed(1), pool_batches=8)
    other, _ = length_bucketed_batches(lengths, 256, torch.Generator().manual_seed(2), pool_batches=8)
    assert torch.equal(batches, again) and not torch.equal(batches, other)


def test_one_batch_per_pool_is_plain_shuffling():
    # pool_batches=1: sorting inside a batch changes no batch's members -> the batches of a plain
    # random permutation (the same generator's first draw), in another order.
    lengths = skewed_lengths(1000)
    batches, _ = length_bucketed_batches(lengths, 100, torch.Generator().manual_seed(3), pool_batches=1)
    plain = torch.randperm(1000, generator=torch.Generator().manual_seed(3)).view(10, 100)
    as_sets = lambda b: sorted(tuple(sorted(row.tolist())) for row in b)
    assert as_sets(batches) == as_sets(plain)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    train = toy_train_split(tmp_path_factory.mktemp("batching"), max_seq_len=20)
    codes = torch.randint(0, 4, (40, 3), generator=torch.Generator().manual_seed(0))
    return train, SemanticIdTokenizer.from_codes(codes, codebook_size=8).sem_ids


def test_resident_batches_equal_host_batches(toy):
    train, sem_ids = toy
    resident = ResidentExamples(train, sem_ids, torch.device("cpu"))
    index = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:16]
    host = data_batch(train, index, sem_ids, torch.device("cpu"))
    device = resident.batch(index)
    assert host.keys() == device.keys()
    for k in host:
        assert torch.equal(host[k], device[k]), k
    assert torch.equal(resident.lengths, train.history_lengths)


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """A toy MovieLens stand-in (32M layout): 40 users of 20 to 100 ratings, histories up to 12 kept."""
    base = tmp_path_factory.mktemp("standin")
    root = make_standin(base / "ml", Size(users=40, movies=120, ratings=1_600, max_movie_id=300), seed=3)
    splits = {s: SeqData(str(root), "ml-32m", "ml-32m", s, max_seq_len=12, cache_dir=str(base / "cache"))
              for s in ("train", "valid", "test")}
    codes = torch.randint(0, 8, (splits["train"].n_items, 3), generator=torch.Generator().manual_seed(0))
    return splits, SemanticIdTokenizer.from_codes(codes, codebook_size=8).sem_ids


@pytest.mark.parametrize("subset", ["train", "valid", "test"])
def test_flat_resident_batches_equal_host_batches_at_borders_and_past_max_seq_len(standin, subset):
    splits, sem_ids = standin
    data = splits[subset]
    resident = ResidentExamples(data, sem_ids, torch.device("cpu"))
    users = data.user_ids
    borders = torch.nonzero(torch.diff(users) != 0).flatten()  # last example of a user; +1: first of the next
    index = torch.cat([
        torch.tensor([0, len(data) - 1]),   # the first and last example (the table's first and last rows)
        borders, borders + 1,
        torch.randperm(len(data), generator=torch.Generator().manual_seed(1))[:64],
    ])
    assert (data.history_lengths[index] == 12).any()  # histories cut to max_seq_len are in the batch
    if subset == "train":
        assert (data.history_lengths[index] == 1).any()  # a user's first training example: 1 item of history
    host = data_batch(data, index, sem_ids, torch.device("cpu"))
    flat = resident.batch(index)
    assert host.keys() == flat.keys()
    for k in host:
        assert host[k].dtype == flat[k].dtype and torch.equal(host[k], flat[k]), k
    # the raw histories too, against the host gather (item ids, -1 padded)
    rows = resident.target_rows[index]
    assert torch.equal(gather_histories(resident.items, rows, resident.history_lengths[index], 12).long(),
                       data.history_batch(index))


def test_resident_store_grows_with_interactions_not_examples_times_max_seq_len(standin):
    splits, sem_ids = standin
    data = splits["train"]
    resident = ResidentExamples(data, sem_ids, torch.device("cpu"))
    n, m = len(data.items), len(data)
    device_tensors = [resident.items, resident.target_rows, resident.history_lengths, resident.user_ids]
    assert [t.numel() for t in device_tensors] == [n, m, m, m]
    assert all(t.dtype == torch.int32 for t in device_tensors)
    stored = sum(t.numel() * t.element_size() for t in device_tensors)
    assert stored == 4 * (n + 3 * m)
    assert stored < 4 * m * data.max_seq_len / 2  # an [M, L] matrix would be several times larger
    assert not any(t.dim() > 1 and t.shape[0] == m for t in vars(resident).values() if torch.is_tensor(t))


def test_trimmed_batch_gives_the_padded_batch_logits_loss_and_gradients(toy):
    train, sem_ids = toy
    torch.manual_seed(0)
    model = EncoderDecoderRetrievalModel(n_levels=4, codebook_size=8, max_history=20, n_user_buckets=50, d_model=32,
                                         n_heads=2, d_head=16, ff_dim=64, n_encoder_layers=2, n_decoder_layers=2,
                                         dropout=0.0)
    index = torch.nonzero(train.history_lengths <= 3).flatten()[:12]  # short histories: most columns are padding
    batch = data_batch(train, index, sem_ids, torch.device("cpu"))
    longest = int(train.history_lengths[index].max())
    assert 2 <= longest < 20
    trimmed = trim_history(batch, longest)
    assert trimmed["history"].shape[1] == longest and torch.equal(trimmed["history"], batch["history"][:, :longest])

    def loss_and_grads(b):
        model.zero_grad()
        logits = model(b["user_ids"], b["history"], b["target"])
        loss = model.loss(logits, b["target"])
        loss.backward()
        return logits.detach(), loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    full_logits, full_loss, full_grads = loss_and_grads(batch)
    trim_logits, trim_loss, trim_grads = loss_and_grads(trimmed)
    torch.testing.assert_close(trim_logits, full_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(trim_loss, full_loss, rtol=1e-6, atol=1e-6)
    for name in full_grads:
        if name == "item_pos_emb.weight":  # positions past `longest` get zero gradient either way
            torch.testing.assert_close(trim_grads[name][:longest], full_grads[name][:longest], rtol=1e-4, atol=1e-6)
            assert full_grads[name][longest:].abs().max() < 1e-6
            continue
        torch.testing.assert_close(trim_grads[name], full_grads[name], rtol=1e-4, atol=1e-6)
    # Trimming into real items would change the result: the comparison can fail.
    cut = trim_history(batch, longest - 1)
    cut_gap = (model(cut["user_ids"], cut["history"], cut["target"]) - full_logits).abs().max()
    assert cut_gap > 100 * (trim_logits - full_logits).abs().max() and cut_gap > 1e-5


def test_micro_batches_cut_the_batch_in_order_and_add_up_to_its_loss_and_gradients(toy):
    train, sem_ids = toy
    batch = data_batch(train, torch.arange(11), sem_ids, torch.device("cpu"))
    assert micro_batches(batch, None) == [batch] and micro_batches(batch, 11) == [batch]
    micros = micro_batches(batch, 4)
    assert [len(m["target"]) for m in micros] == [4, 4, 3]
    for k in batch:
        assert torch.equal(torch.cat([m[k] for m in micros]), batch[k])

    torch.manual_seed(0)
    model = EncoderDecoderRetrievalModel(n_levels=4, codebook_size=8, max_history=20, n_user_buckets=50, d_model=32,
                                         n_heads=2, d_head=16, ff_dim=64, n_encoder_layers=1, n_decoder_layers=1,
                                         dropout=0.0)

    def grads_after(pieces):
        model.zero_grad()
        total = 0.0
        for b in pieces:  # weighted by their share of the batch, as train_decoder.py does (4/11, 4/11, 3/11)
            loss = model.loss(model(b["user_ids"], b["history"], b["target"]), b["target"]) * (len(b["target"]) / 11)
            loss.backward()
            total += loss.item()
        return total, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    whole_loss, whole = grads_after([batch])
    micro_loss, micro = grads_after(micros)
    assert micro_loss == pytest.approx(whole_loss, rel=1e-6)
    for name in whole:
        torch.testing.assert_close(micro[name], whole[name], rtol=1e-4, atol=1e-6)


def test_trimmed_lengths_compile_once_more_at_most(toy):
    """torch.compile over length-bucketed batches: one graph for the first length, one dynamic graph for all
    the others, as long as trimming keeps one memory layout and never leaves a single column (min_length=2).
    Sliced views (other strides) and a length of 1 each cost another compilation (~1 min on a real model)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    train, sem_ids = toy
    model = EncoderDecoderRetrievalModel(n_levels=4, codebook_size=8, max_history=20, n_user_buckets=50, d_model=16,
                                         n_heads=2, d_head=8, ff_dim=32, n_encoder_layers=1, n_decoder_layers=1, dropout=0.0)
    batch = data_batch(train, torch.arange(8), sem_ids, torch.device("cpu"))

    def graphs(trim) -> int:
        torch._dynamo.reset()
        counters.clear()
        compiled = torch.compile(model, backend="eager")
        for length in (5, 3, 20, 1, 7):
            b = trim(batch, length)
            compiled(b["user_ids"], b["history"], b["target"])
        return counters["stats"]["unique_graphs"]

    assert graphs(lambda b, n: trim_history(b, n, min_length=2)) == 2
    assert graphs(lambda b, n: trim_history(b, n)) > 2  # a length of 1
    assert graphs(lambda b, n: {**b, "history": b["history"][:, :max(n, 2)]}) > 2  # sliced views: new strides


def test_sem_id_batch_maps_items_and_keeps_padding():
    sem_ids = torch.tensor([[0, 1, 0, 0], [2, 2, 1, 0], [1, 0, 0, 1]])
    batch = {"user_id": torch.tensor([5]), "history": torch.tensor([[2, 0, -1]]), "target": torch.tensor([1])}
    out = sem_id_batch(batch, sem_ids)
    assert out["history"].tolist() == [[[1, 0, 0, 1], [0, 1, 0, 0], [-1, -1, -1, -1]]]
    assert out["target"].tolist() == [[2, 2, 1, 0]] and out["target_item"].tolist() == [1]


def test_crop_keeps_the_last_k_items_in_order_at_the_front_and_pads_the_rest():
    # 4 histories of n = 5, 3, 1, 4 items, 2 codes each: item j of example b has codes (10 b + j, 100 + j)
    history = torch.full((4, 5, 2), -1)
    for b, n in enumerate([5, 3, 1, 4]):
        for j in range(n):
            history[b, j] = torch.tensor([10 * b + j, 100 + j])
    draws = torch.tensor([[0.1, 0.1, 0.1, 0.9],    # < 0.5: cropped (the last one is not)
                          [0.5, 0.99, 0.5, 0.0]])  # k = 1 + floor(draw x n): 3 of 5, 3 of 3, 1 of 1
    cropped = crop_histories(history, 0.5, draws)
    assert cropped[..., 0].tolist() == [[2, 3, 4, -1, -1], [10, 11, 12, -1, -1], [20, -1, -1, -1, -1],
                                        [30, 31, 32, 33, -1]]
    assert cropped[0, :3, 1].tolist() == [102, 103, 104] and (cropped[0, 3:] == -1).all()  # an item's codes move together
    assert torch.equal(crop_histories(history, 0.0, draws), history)  # probability 0: nothing changes
    assert torch.equal(crop_histories(history, 1.0, torch.tensor([[0.0] * 4, [0.999] * 4])), history)  # k = n


def test_crop_draws_every_suffix_length_about_equally_often():
    n = 4
    history = torch.arange(n).view(1, n, 1).expand(20_000, n, 1).contiguous()
    g = torch.Generator().manual_seed(0)
    kept = (crop_histories(history, 0.5, torch.rand(2, 20_000, generator=g))[..., 0] >= 0).sum(dim=1)
    shares = torch.bincount(kept, minlength=n + 1)[1:].float() / 20_000
    # half untouched (k = n), the other half k uniform in 1..n: 1/8 each, plus 1/2 at n
    assert torch.allclose(shares, torch.tensor([0.125, 0.125, 0.125, 0.625]), atol=0.015)
