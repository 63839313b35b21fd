"""Runs that survive what clusters do to them: SIGTERM or Ctrl-C during training leaves a checkpoint of the
step reached and the same command continues exactly; two runs cannot write one run folder; a folder that
cannot be written fails before training."""
import fcntl
import os
import signal

import gin
import pytest
import torch

import train_decoder
from runtime.errors import CheckpointError, ConfigError
from runtime.preemption import StopSignal
from tests.test_train_decoder import stage1, tiny_run_args  # noqa: F401 (pytest fixture)
from tests.test_train_rqvae import data, run as run_rqvae  # noqa: F401 (pytest fixture)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def signal_at_step(monkeypatch, module, function: str, step: int, signum: int = signal.SIGTERM) -> None:
    """Send `signum` to this process during the `step`-th call of module.function (a training step)."""
    original, calls = getattr(module, function), []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            os.kill(os.getpid(), signum)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, function, wrapped)


def weights(path):
    return torch.load(path, weights_only=True)["model"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stopped_decoder_run_checkpoints_its_step_and_continues_exactly(stage1, monkeypatch, signum):
    straight = train_decoder.main(tiny_run_args(stage1, 20, ["--gin", f'train.save_dir="{stage1 / "straight"}"']))
    handler = signal.getsignal(signum)
    with monkeypatch.context() as m:
        signal_at_step(m, train_decoder, "train_step", 7, signum)
        stopped = train_decoder.main(tiny_run_args(stage1, 20))
    assert stopped["stopped_by"] == signal.Signals(signum).name and stopped["steps"] == 7
    run = stage1 / "decoder" / "amazon-beauty"
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 7
    assert signal.getsignal(signum) == handler  # restored after the run
    resumed = train_decoder.main(tiny_run_args(stage1, 20))  # the same command
    assert resumed["stopped_by"] is None and resumed["steps"] == 20
    assert resumed["best_valid"] == straight["best_valid"]
    a, b = weights(run / "checkpoint.pt"), weights(stage1 / "straight" / "amazon-beauty" / "checkpoint.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_stopped_rqvae_run_writes_no_ids_then_finishes_exactly(data, tmp_path, monkeypatch):
    straight = run_rqvae(data, tmp_path / "straight", "train.iterations=6")
    with monkeypatch.context() as m:
        signal_at_step(m, torch.optim.AdamW, "step", 4)
        stopped = run_rqvae(data, tmp_path / "run", "train.iterations=6")
    folder = tmp_path / "run" / "amazon-beauty"
    assert stopped["stopped_by"] == "SIGTERM" and stopped["step"] == 4
    assert not (folder / "semantic_ids.pt").exists() and torch.load(folder / "checkpoint.pt", weights_only=True)["step"] == 4
    resumed = run_rqvae(data, tmp_path / "run", "train.iterations=6")
    assert resumed["last_train_loss"] == straight["last_train_loss"]
    a, b = weights(folder / "checkpoint.pt"), weights(tmp_path / "straight" / "amazon-beauty" / "checkpoint.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(torch.load(folder / "semantic_ids.pt", weights_only=True)["sem_ids"],
                       torch.load(tmp_path / "straight" / "amazon-beauty" / "semantic_ids.pt", weights_only=True)["sem_ids"])


def test_a_second_run_into_the_same_folder_is_refused_naming_the_first(stage1):
    folder = stage1 / "decoder" / "amazon-beauty"
    folder.mkdir(parents=True)
    with open(folder / ".lock", "a+") as other:  # another process's run holds the folder
        other.write("pid 4242 on elsewhere, started 2026-12-05 10:00:00\n")
        other.flush()
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(CheckpointError, match=r"being written by another run \(pid 4242 on elsewhere"):
            train_decoder.main(tiny_run_args(stage1, 10))
        assert not (folder / "checkpoint.pt").exists()
    assert train_decoder.main(tiny_run_args(stage1, 10))["steps"] == 10  # released: the folder is free again
    assert train_decoder.main(tiny_run_args(stage1, 12))["steps"] == 12  # and the run released it when done


def test_a_folder_that_cannot_be_written_fails_before_training(stage1, monkeypatch):
    (stage1 / "a_file").write_text("not a folder")
    calls = []
    monkeypatch.setattr(train_decoder, "train_step", lambda *a, **k: calls.append(1))
    with pytest.raises(ConfigError, match=r"cannot write the run folder .*a_file.*train\.save_dir"):
        train_decoder.main(tiny_run_args(stage1, 10, ["--gin", f'train.save_dir="{stage1 / "a_file" / "runs"}"']))
    assert not calls


def test_stop_signal_restores_the_previous_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.name == "SIGTERM" and stop.requested(1, torch.device("cpu"))
    assert signal.getsignal(signal.SIGTERM) == before
    gin.clear_config()
