import pytest
import torch

from data.batching import data_batch, trim_history, window_batch
from data.training_stream import TrainingStream, epoch_batches
from data.windows import TrainingWindows
from runtime.distributed import DistEnv
from runtime.errors import ConfigError
from tests.data.test_batching import toy  # noqa: F401 (pytest fixture: 30 users, 40 items, random 3-code IDs)

CPU = torch.device("cpu")
ONE = DistEnv(rank=0, world_size=1, local_rank=0, device=CPU)


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_epoch_batches_are_a_permutation_fixed_by_seed_and_epoch():
    lengths = torch.arange(1, 104) % 7 + 1
    batches, max_lengths = epoch_batches(lengths, 10, seed=5, epoch=2, bucket_by_length=False)
    assert batches.shape == (10, 10) and max_lengths is None
    assert len(torch.unique(batches)) == 100  # each example at most once per epoch
    assert torch.equal(batches, torch.randperm(103, generator=torch.Generator().manual_seed(7))[:100].view(10, 10))
    other, _ = epoch_batches(lengths, 10, seed=5, epoch=3, bucket_by_length=False)
    assert not torch.equal(batches, other)


def test_steps_read_their_epochs_batches_and_a_new_stream_resumes_at_any_step(toy):
    train, sem_ids = toy
    stream = TrainingStream(train, sem_ids, 8, seed=3, all_positions=False, bucket_by_length=False, resident=False,
                            device=CPU, env=ONE)
    per_epoch = len(train) // 8
    assert stream.steps_per_epoch == per_epoch and stream.examples_per_step == 8
    walked = [stream.batch(step) for step in range(2 * per_epoch + 1)]  # into a third epoch
    second, _ = epoch_batches(train.history_lengths, 8, 3, 1, False)
    batch, weight = walked[per_epoch + 2]
    assert weight == 1.0 and same(batch, data_batch(train, second[2], sem_ids, CPU))
    resumed = TrainingStream(train, sem_ids, 8, seed=3, all_positions=False, bucket_by_length=False, resident=False,
                             device=CPU, env=ONE)
    assert same(resumed.batch(per_epoch + 2)[0], batch)  # a resumed run, fresh stream, same batch


def test_resident_bucketed_and_window_streams_build_what_the_host_builds(toy):
    train, sem_ids = toy
    kwargs = dict(bucket_by_length=True, device=CPU, env=ONE, min_length=2)
    host = TrainingStream(train, sem_ids, 4, seed=1, all_positions=False, resident=False, **kwargs)
    resident = TrainingStream(train, sem_ids, 4, seed=1, all_positions=False, resident=True, **kwargs)
    batches, max_lengths = epoch_batches(train.history_lengths, 4, 1, 0, True)
    expected = trim_history(data_batch(train, batches[1], sem_ids, CPU), max_lengths[1], min_length=2)
    assert same(host.batch(1)[0], expected) and same(resident.batch(1)[0], expected)
    windows = TrainingStream(train, sem_ids, 2, seed=1, all_positions=True, resident=False, **kwargs)
    reference = TrainingWindows(train)
    assert windows.n_units == len(reference) and windows.examples_per_step == pytest.approx(2 * len(train) / len(reference))
    batches, max_lengths = epoch_batches(reference.lengths, 2, 1, 0, True)
    expected = trim_history(window_batch(reference, batches[0], sem_ids, CPU), max_lengths[0], min_length=2)
    assert same(windows.batch(0)[0], expected)


def test_a_batch_larger_than_the_split_is_refused_naming_the_binding(toy):
    train, sem_ids = toy
    with pytest.raises(ConfigError, match=f"train.batch_size = 1000 exceeds the {len(train)} training examples"):
        TrainingStream(train, sem_ids, 1000, seed=1, all_positions=False, bucket_by_length=False, resident=False,
                       device=CPU, env=ONE)


def test_history_crop_is_fixed_by_seed_and_step_and_only_shortens_histories_to_their_recent_part(toy):
    train, sem_ids = toy
    kwargs = dict(all_positions=False, bucket_by_length=False, resident=False, device=CPU, env=ONE)
    plain = TrainingStream(train, sem_ids, 8, seed=3, **kwargs)
    crop = TrainingStream(train, sem_ids, 8, seed=3, history_crop=0.5, **kwargs)
    changed = 0
    for step in range(6):
        full, cut = plain.batch(step)[0], crop.batch(step)[0]
        assert same({k: v for k, v in full.items() if k != "history"}, {k: v for k, v in cut.items() if k != "history"})
        n, k = (full["history"][..., 0] >= 0).sum(1), (cut["history"][..., 0] >= 0).sum(1)
        assert ((k >= 1) & (k <= n)).all()
        for row in range(8):  # the kept items are the last k of the history, at the front
            assert torch.equal(cut["history"][row, :k[row]], full["history"][row, n[row] - k[row]:n[row]])
        changed += int((k < n).sum())
        again = TrainingStream(train, sem_ids, 8, seed=3, history_crop=0.5, **kwargs)  # a resumed run
        assert same(again.batch(step)[0], cut)
    assert changed > 0
    ranks = [TrainingStream(train, sem_ids, 8, seed=3, history_crop=0.5, **{**kwargs, "env": DistEnv(r, 2, r, CPU)})
             for r in (0, 1)]  # DDP: each rank crops its slice of the global batch as one process would
    halves = [rank.batch(5)[0] for rank in ranks]
    assert same({k: torch.cat([h[k] for h in halves]) for k in cut}, cut)
    huge = TrainingStream(train, sem_ids, 8, seed=2**40, history_crop=0.5, **kwargs)  # seeds past 2**31 crop too
    assert huge.batch(0)[0]["history"].shape == cut["history"].shape
    with pytest.raises(ConfigError, match="train.history_crop > 0 crops one example's history"):
        TrainingStream(train, sem_ids, 2, seed=1, all_positions=True, bucket_by_length=False, resident=False, device=CPU,
                       env=ONE, history_crop=0.5)
