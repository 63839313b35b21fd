"""train.all_positions in train_decoder.py: windows trained in one causal pass, resumed exactly, evaluated
by the same validation and evaluate.py as per-example runs (tiny fixture data, CPU)."""
import contextlib
import copy

import pytest
import torch

import evaluate
import train_decoder
from data.batching import window_batch
from data.processed import SeqData
from data.windows import TrainingWindows
from modules.tokenizer import SemanticIdTokenizer
from runtime.checkpointing import CheckpointError
from runtime.optimizer import build_optimizer
from tests.test_train_decoder import stage1, tiny_run_args  # noqa: F401 (pytest fixture)

ALL_POSITIONS = ["--gin", "train.all_positions=True"]


def args(base, iterations, *bindings):
    return tiny_run_args(base, iterations, [*ALL_POSITIONS, *(a for b in bindings for a in ("--gin", b))])


def checkpoint(base, name="decoder"):
    return torch.load(base / name / "amazon-beauty" / "checkpoint.pt", weights_only=True)


def test_a_run_trains_windows_validates_and_evaluates_as_per_example_runs_do(stage1, capsys):
    result = train_decoder.main(args(stage1, 20))
    assert [h["step"] for h in result["valid_history"]] == [10, 20]
    train = SeqData(str(stage1 / "amazon"), "amazon", "beauty", "train", None, str(stage1 / "cache"))
    windows = TrainingWindows(train)
    per_window = len(train) / len(windows)  # every fixture user fits one window of 40 items
    assert len(windows) == 30 and per_window > 3
    assert [h["examples_seen"] for h in result["valid_history"]] == [round(s * 16 * per_window) for s in (10, 20)]
    state = checkpoint(stage1)
    assert state["model_kwargs"]["causal_encoder"] is True and "encoder_distance_bias.weight" in state["model"]
    assert state["model"]["cross_distance_bias.weight"].abs().sum() > 0  # the biases learn (they start at zero)
    # evaluate.py rebuilds the causal model from best.pt and reproduces validation, both protocols
    valid = evaluate.main(args(stage1, 20) + ["--split", "valid"])
    for k in evaluate.REPORTED:
        assert valid["tiger"][k] == pytest.approx(result["best_valid"][k])
    test = evaluate.main(args(stage1, 20) + ["--split", "test"])
    for protocol in ("plain", "history_skipped"):
        assert test[protocol]["tiger"]["invalid_id_share"] == 0.0 and 0 <= test[protocol]["tiger"]["recall@10"] <= 1


def test_resume_continues_exactly_with_resident_bucketed_windows(stage1):
    fast = ("train.bucket_by_length=True", "train.resident_data=True")
    train_decoder.main(args(stage1, 20, *fast))
    train_decoder.main(args(stage1, 30, *fast))  # resumed
    straight = f'train.save_dir="{stage1 / "straight"}"'
    train_decoder.main(args(stage1, 30, straight, "train.bucket_by_length=True", "train.resident_data=False"))
    resumed, uninterrupted = checkpoint(stage1)["model"], checkpoint(stage1, "straight")["model"]
    for k in uninterrupted:
        torch.testing.assert_close(resumed[k], uninterrupted[k], rtol=0, atol=0)


def test_switching_all_positions_on_a_run_is_refused(stage1, capsys):
    train_decoder.main(tiny_run_args(stage1, 10))
    with pytest.raises(CheckpointError, match="all_positions"):
        train_decoder.main(args(stage1, 20))


def test_micro_batches_of_windows_step_like_the_whole_batch(stage1):
    # No dropout: the same function; the loss is the mean over the batch's targets, each micro-batch
    # weighted by its share of them (windows hold different numbers of targets).
    train = SeqData(str(stage1 / "amazon"), "amazon", "beauty", "train", None, str(stage1 / "cache"))
    windows = TrainingWindows(train)
    tokenizer = SemanticIdTokenizer.load(stage1 / "rqvae" / "amazon-beauty" / "semantic_ids.pt")
    bindings = {"n_user_buckets": 50, "d_model": 16, "n_heads": 2, "d_head": 8, "ff_dim": 32, "n_encoder_layers": 1,
                "n_decoder_layers": 1, "dropout": 0.0, "constrained_softmax": True, "item_tokens": True,
                "item_token_dropout": 0.0, "all_positions": True, "history_bias": False,
                "history_bias_stop_gradient": False, "successor_token": False, "dropout_masks": "torch"}
    torch.manual_seed(0)
    model = train_decoder.build_model(tokenizer.sem_ids, tokenizer.codebook_size, train.max_seq_len, bindings)
    twin = copy.deepcopy(model)
    batch = window_batch(windows, torch.arange(10), tokenizer.sem_ids, torch.device("cpu"))
    trie = tokenizer.trie()
    losses = []
    for m, micro in ((model, None), (twin, 3)):
        opt = build_optimizer(m, "adamw", 0.01, 0.0)
        loss, _ = train_decoder.train_step(m, m, batch, opt, contextlib.nullcontext(), trie=trie, micro_batch_size=micro)
        losses.append(loss)
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)

