import inspect
import json
from pathlib import Path

import gin
import pytest
import torch

import train_rqvae
from runtime.checkpointing import CheckpointError
from runtime.errors import ConfigError
from runtime.gin_cli import parse_gin_args
from modules.rqvae import RqVae
from modules.tokenizer import SemanticIdTokenizer
from tests.fixtures import write_amazon_raw

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
CPU_CONFIG = str(CONFIGS / "rqvae_amazon_cpu.gin")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(autouse=True)
def fresh_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny Amazon data set and one embedding cache shared by every run of this file."""
    base = tmp_path_factory.mktemp("rqvae_data")
    return write_amazon_raw(base / "amazon", n_users=30, n_items=40), base / "cache"


def run(data, save_dir, *bindings, capsys=None):
    root, cache = data
    argv = [CPU_CONFIG,
            "--gin", f'train.dataset_folder="{root}"', "--gin", f'train.cache_dir="{cache}"',
            "--gin", f'train.save_dir="{save_dir}"',
            # a model small enough for 40 items and a few seconds of CPU
            "--gin", "train.hidden_dims=(32, 16)", "--gin", "train.latent_dim=8", "--gin", "train.codebook_size=64",
            "--gin", "train.batch_size=16", "--gin", "train.dead_code_window=2", "--gin", "train.held_out_fraction=0.1",
            "--gin", "train.eval_every=1000", "--gin", "train.checkpoint_every=1000",
            "--gin", "train.collaborative_dim=4",  # the config's 64 needs more than 40 items
            *[arg for b in bindings for arg in ("--gin", b)]]
    gin.clear_config()
    return train_rqvae.main(argv)


def test_short_run_lowers_the_loss_and_writes_a_usable_tokenizer(data, tmp_path, capsys):
    before = run(data, tmp_path / "one", "train.iterations=1")
    after = run(data, tmp_path / "many", "train.iterations=150", "train.learning_rate=0.003")
    assert after["eval_reconstruction_loss"] < 0.5 * before["eval_reconstruction_loss"]

    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["step"] == 150 and printed["semantic_ids"] == after["semantic_ids"]
    run_dir = tmp_path / "many" / "amazon-beauty"
    tokenizer = SemanticIdTokenizer.load(run_dir / "semantic_ids.pt")
    assert tokenizer.sem_ids.shape == (40, 4) and tokenizer.codebook_size == 64
    assert torch.unique(tokenizer.sem_ids, dim=0).shape[0] == 40
    assert "train.iterations = 150" in (run_dir / "config.gin").read_text()
    # The checkpoint alone rebuilds the model, which reproduces the saved IDs.
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    model = RqVae(**state["model_kwargs"])
    model.load_state_dict(state["model"])
    gin.clear_config()
    from data.processed import ItemData

    features = ItemData(str(data[0]), cache_dir=str(data[1]), collaborative_dim=4).features
    assert torch.equal(model.semantic_ids(features), tokenizer.sem_ids[:, :3])


@pytest.mark.parametrize("mode", ["ste", "rotation"])
def test_resumed_run_continues_exactly(data, tmp_path, mode):
    straight = run(data, tmp_path / "straight", "train.iterations=5", f'train.forward_mode="{mode}"')
    run(data, tmp_path / "first", "train.iterations=3", f'train.forward_mode="{mode}"')
    (tmp_path / "first").rename(tmp_path / "resumed")  # a run folder moved elsewhere continues
    resumed = run(data, tmp_path / "resumed", "train.iterations=5", f'train.forward_mode="{mode}"')
    assert resumed["last_train_loss"] == straight["last_train_loss"]  # same batches, same restarts, same state
    a = torch.load(tmp_path / "straight" / "amazon-beauty" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "amazon-beauty" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_another_config_is_refused_and_resume_false_starts_over(data, tmp_path):
    run(data, tmp_path, "train.iterations=2")
    with pytest.raises(CheckpointError, match="learning_rate"):
        run(data, tmp_path, "train.iterations=3", "train.learning_rate=0.01")
    fresh = run(data, tmp_path, "train.iterations=1", "train.learning_rate=0.01", "train.resume=False")
    assert fresh["step"] == 1


def test_bad_gin_fails_with_a_clear_message(data, tmp_path):
    with pytest.raises(ConfigError, match="not_a_parameter"):
        run(data, tmp_path, "train.not_a_parameter=1")
    with pytest.raises(ConfigError, match="train.batch_size"):
        run(data, tmp_path, 'train.batch_size="large"')
    with pytest.raises(ValueError, match="train.optimizer"):
        run(data, tmp_path, 'train.optimizer="sgd"', "train.iterations=1")


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("rqvae_*.gin")), ids=lambda p: p.name)
def test_every_config_parses_and_sets_every_parameter(config):
    parse_gin_args(train_rqvae.train, [str(config)])
    bound = set(gin.get_bindings(train_rqvae.train))
    assert bound == set(inspect.signature(train_rqvae.train).parameters)  # nothing left to a hidden default


def test_collaborative_features_reach_the_tokenizer(data, tmp_path):
    result = run(data, tmp_path / "collab", "train.iterations=20", "train.collaborative_dim=4",
                 "train.collaborative_weight=0.5")
    run_dir = tmp_path / "collab" / "amazon-beauty"
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    gin.clear_config()
    from data.processed import ItemData

    text = ItemData(str(data[0]), cache_dir=str(data[1])).features
    features = ItemData(str(data[0]), cache_dir=str(data[1]), collaborative_dim=4, collaborative_weight=0.5).features
    assert state["model_kwargs"]["input_dim"] == text.shape[1] + 4
    model = RqVae(**state["model_kwargs"])
    model.load_state_dict(state["model"])
    assert torch.equal(model.semantic_ids(features), SemanticIdTokenizer.load(result["semantic_ids"]).sem_ids[:, :3])

    with pytest.raises(ConfigError, match="train.collaborative_dim = 40: must be below the 40 items"):
        run(data, tmp_path / "too_big", "train.collaborative_dim=40")
    assert not (tmp_path / "too_big").exists()  # refused before anything is written
