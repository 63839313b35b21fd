"""The fast-path switches of train_decoder.py preserve what is trained (CPU checks)."""
import os

import pytest
import torch

import data.batching
import data.training_stream
import train_decoder
from evaluation.retrieval import recommend
from tests.fixtures import without_wall_time
from tests.test_train_decoder import stage1, tiny_run_args  # noqa: F401 (pytest fixture)


def weights(path):
    return torch.load(path / "decoder" / "amazon-beauty" / "checkpoint.pt", weights_only=True)["model"]


def train_run(base, name, iterations, *bindings):
    args = tiny_run_args(base, iterations, [a for b in (f'train.save_dir="{base / name / "decoder"}"', *bindings)
                                            for a in ("--gin", b)])
    return train_decoder.main(args), weights(base / name)


def test_resident_data_trains_exactly_like_host_batches(stage1):
    host_result, host = train_run(stage1, "host", 20, "train.resident_data=False")
    res_result, res = train_run(stage1, "resident", 20, "train.resident_data=True")
    for k in host:
        torch.testing.assert_close(res[k], host[k], rtol=0, atol=0)
    assert without_wall_time(res_result["valid_history"]) == without_wall_time(host_result["valid_history"])


def test_bucketed_trimmed_batches_train_like_the_same_batches_padded(stage1, monkeypatch):
    # No dropout: the padded and the trimmed forward then compute the same function.
    bucketed = ("train.bucket_by_length=True", "train.dropout=0.0")
    trimmed_result, trimmed = train_run(stage1, "trimmed", 20, *bucketed)
    monkeypatch.setattr(data.training_stream, "trim_history", lambda batch, length, **_: batch)  # same batches, full padding
    padded_result, padded = train_run(stage1, "padded", 20, *bucketed)
    for k in padded:
        torch.testing.assert_close(trimmed[k], padded[k], rtol=1e-4, atol=1e-5)
    for a, b in zip(without_wall_time(trimmed_result["valid_history"]), without_wall_time(padded_result["valid_history"])):
        assert a == pytest.approx(b, abs=1e-6)
    # ... and the bucketed batches really are other batches than plain shuffling's.
    _, plain = train_run(stage1, "plain", 20, "train.dropout=0.0")
    assert any(not torch.allclose(plain[k], padded[k], atol=1e-5) for k in plain)


def test_bucketed_batches_are_trimmed_and_resume_exactly(stage1, monkeypatch):
    widths = []
    real_trim = data.batching.trim_history
    monkeypatch.setattr(data.training_stream, "trim_history",
                        lambda batch, length, **kw: widths.append(int(length)) or real_trim(batch, length, **kw))
    # eval_sort_by_length off: only the training batches go through trim_history here
    train_run(stage1, "resumed", 20, "train.bucket_by_length=True", "train.resident_data=True", "train.eval_sort_by_length=False")
    assert len(widths) == 20 and min(widths) < 20  # short batches ran with fewer history columns
    train_run(stage1, "resumed", 30, "train.bucket_by_length=True", "train.resident_data=True")
    _, straight = train_run(stage1, "straight", 30, "train.bucket_by_length=True", "train.resident_data=False")
    resumed = weights(stage1 / "resumed")
    for k in straight:
        torch.testing.assert_close(resumed[k], straight[k], rtol=0, atol=0)


def test_micro_batches_train_like_the_whole_batch(stage1):
    # No dropout (micro-batches draw other dropout masks); 16 examples in pieces of 6, 6 and 4.
    whole_result, whole = train_run(stage1, "whole", 20, "train.dropout=0.0")
    micro_result, micro = train_run(stage1, "micro", 20, "train.dropout=0.0", "train.micro_batch_size=6")
    for k in whole:
        torch.testing.assert_close(micro[k], whole[k], rtol=1e-4, atol=1e-5)
    for a, b in zip(without_wall_time(micro_result["valid_history"]), without_wall_time(whole_result["valid_history"])):
        assert a == pytest.approx(b, abs=1e-5)


@pytest.mark.skipif(not os.environ.get("TIGER_SLOW_TESTS"), reason="compiling on the CPU takes ~80 s: TIGER_SLOW_TESTS=1")
def test_compiled_forward_trains_like_eager(stage1):
    # Length-trimmed batches, as the fast config trains: compiled, a 1-column batch keeps a padded column.
    same = ("train.dropout=0.0", "train.eval_every=6", "train.bucket_by_length=True")
    _, eager = train_run(stage1, "eager", 6, *same)
    _, compiled = train_run(stage1, "compiled", 6, *same, "train.compile_model=True")
    for k in eager:
        torch.testing.assert_close(compiled[k], eager[k], rtol=1e-4, atol=1e-5)


def test_length_sorted_trimmed_beam_search_returns_the_same_ranking(stage1):
    from data.processed import SeqData
    from modules.model import EncoderDecoderRetrievalModel
    from modules.tokenizer import SemanticIdTokenizer

    tokenizer = SemanticIdTokenizer.load(stage1 / "rqvae" / "amazon-beauty" / "semantic_ids.pt")
    data = SeqData(str(stage1 / "amazon"), "amazon", "beauty", "valid", max_seq_len=20, cache_dir=str(stage1 / "cache"))
    torch.manual_seed(0)
    model = EncoderDecoderRetrievalModel(n_levels=4, codebook_size=8, max_history=20, n_user_buckets=50, d_model=32,
                                         n_heads=2, d_head=16, ff_dim=64, n_encoder_layers=2, n_decoder_layers=2,
                                         dropout=0.1)
    with torch.no_grad():  # weights far from the near-uniform init: well-separated scores, no ties
        for p in model.parameters():
            p.normal_(0, 0.5)
    trie = tokenizer.trie()
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:25]  # not in length order
    args = (model, data, tokenizer.sem_ids, trie, 10, 10, 7, torch.device("cpu"), index)
    plain = recommend(*args)
    sorted_ = recommend(*args, sort_by_length=True)
    assert data.history_lengths[index].unique().numel() > 3  # chunks of 7 really get trimmed differently
    assert torch.equal(sorted_["item_ids"], plain["item_ids"]) and torch.equal(sorted_["sem_ids"], plain["sem_ids"])
    torch.testing.assert_close(sorted_["scores"], plain["scores"], rtol=1e-5, atol=1e-5)


def test_code_counts_without_bincount_equal_bincount():
    from modules.codebook_health import code_counts

    ids = torch.randint(0, 16, (1000, 3), generator=torch.Generator().manual_seed(0))
    ids[:, 2] = ids[:, 2].clamp(max=5)  # a level with unused codes
    expected = torch.stack([torch.bincount(level, minlength=16) for level in ids.T])
    assert torch.equal(code_counts(ids, 16), expected)
