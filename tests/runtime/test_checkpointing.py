import json
import random

import numpy as np
import pytest
import torch

from runtime.checkpointing import (
    CheckpointError,
    check_resume_config,
    gin_defaults,
    load_checkpoint,
    manifest_path,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def _save(path, step=3, bindings=None):
    model = torch.nn.Linear(4, 2)
    save_checkpoint(path, {"model": model.state_dict()}, step=step, bindings=bindings or {"lr": "0.1"}, metrics={"loss": 1.5})
    return model


def test_round_trip_and_manifest(tmp_path):
    path = tmp_path / "checkpoint.pt"
    model = _save(path)
    state = load_checkpoint(path)
    assert torch.equal(state["model"]["weight"], model.state_dict()["weight"])
    side = json.loads(manifest_path(path).read_text())
    assert side["step"] == 3 and side["metrics"] == {"loss": 1.5} and side["bindings"] == {"lr": "0.1"}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    _save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)
    assert path.read_bytes() == data[: len(data) // 2]  # detected, left as it was


def test_flipped_byte_is_detected_by_the_manifest(tmp_path):
    path = tmp_path / "checkpoint.pt"
    _save(path)
    data = bytearray(path.read_bytes())
    # Flip a byte inside the stored weights (past the zip headers) so the file may still load.
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_resume_with_other_config_names_the_bindings(tmp_path):
    path = tmp_path / "checkpoint.pt"
    _save(path, bindings={"lr": "0.1", "batch_size": "64"})
    manifest = load_checkpoint(path)["manifest"]
    with pytest.raises(CheckpointError, match=r"train\.lr: 0\.1 -> 0\.2"):
        check_resume_config(manifest, {"lr": "0.2", "batch_size": "64"}, path=path)
    check_resume_config(manifest, {"lr": "0.2", "batch_size": "64"}, path=path, force=True)
    check_resume_config(manifest, {"lr": "0.1", "batch_size": "64", "wandb": "True"}, path=path, ignore={"wandb"})


def test_a_binding_missing_on_one_side_counts_as_its_code_default(tmp_path):
    path = tmp_path / "checkpoint.pt"
    _save(path, bindings={"lr": "0.1"})  # written before `cooldown` was bound anywhere
    manifest = load_checkpoint(path)["manifest"]
    defaults = gin_defaults(_train_with_defaults)
    check_resume_config(manifest, {"lr": "0.1", "cooldown": "0"}, path=path, defaults=defaults)  # bound at its default
    with pytest.raises(CheckpointError, match=r"train\.cooldown: <default> -> 500"):
        check_resume_config(manifest, {"lr": "0.1", "cooldown": "500"}, path=path, defaults=defaults)
    with pytest.raises(CheckpointError, match=r"train\.cooldown: <default> -> 0"):  # no defaults given: any new binding differs
        check_resume_config(manifest, {"lr": "0.1", "cooldown": "0"}, path=path)
    with pytest.raises(CheckpointError, match=r"train\.lr: 0\.1 -> <default>"):  # unbound now: lr takes 0.01
        check_resume_config(manifest, {}, path=path, defaults=defaults)


def test_a_retired_binding_resumes_at_the_value_the_code_now_always_takes(tmp_path):
    path = tmp_path / "checkpoint.pt"
    _save(path, bindings={"lr": "0.1", "cooldown": "0"})  # written when `cooldown` still existed
    manifest = load_checkpoint(path)["manifest"]
    check_resume_config(manifest, {"lr": "0.1"}, path=path, retired={"cooldown": "0"})
    _save(path, bindings={"lr": "0.1", "cooldown": "500"})  # a run that used it: not the run this code makes
    manifest = load_checkpoint(path)["manifest"]
    with pytest.raises(CheckpointError, match=r"train\.cooldown: 500 -> <no longer exists>"):
        check_resume_config(manifest, {"lr": "0.1"}, path=path, retired={"cooldown": "0"})


def _train_with_defaults(lr: float = 0.01, cooldown: int = 0, dataset_folder: str = "raw_data") -> None:
    pass


def test_gin_defaults_of_the_entry_points_match_their_signatures():
    import train_decoder
    defaults = gin_defaults(train_decoder.train)
    assert defaults["lr_ramp_steps"] == "0" and defaults["learning_rate"] == "0.01"
    assert gin_defaults(_train_with_defaults) == {"lr": "0.01", "cooldown": "0", "dataset_folder": "'raw_data'"}


def test_rng_state_round_trip():
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
