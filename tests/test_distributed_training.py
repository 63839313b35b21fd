"""torchrun with 2 gloo processes on the CPU trains both stages to the parameters one process
reaches with the same global batch, and writes one set of files and one JSON line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train_decoder
import train_rqvae
from modules.tokenizer import SemanticIdTokenizer
from tests.fixtures import write_amazon_raw, without_wall_time
from tests.test_train_decoder import N_ITEMS, tiny_run_args
from tests.test_train_rqvae import CPU_CONFIG

REPO = Path(__file__).resolve().parent.parent


def torchrun(script: str, argv: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           script, *argv, "--gin", "train.num_threads=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def model_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def assert_same_parameters(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5, msg=k)


def rqvae_args(root: Path, cache: Path, save_dir: Path) -> list[str]:
    # k-means init, two dead-code restarts and an evaluation inside 6 steps
    bindings = [f'train.dataset_folder="{root}"', f'train.cache_dir="{cache}"', f'train.save_dir="{save_dir}"',
                "train.hidden_dims=(32, 16)", "train.latent_dim=8", "train.codebook_size=64", "train.batch_size=16",
                "train.dead_code_window=2", "train.held_out_fraction=0.1", "train.iterations=6",
                "train.eval_every=3", "train.checkpoint_every=3", 'train.device="cpu"',
                "train.collaborative_dim=4"]  # the config's 64 needs more than 40 items
    return [CPU_CONFIG, *[a for b in bindings for a in ("--gin", b)]]


def test_rqvae_two_processes_match_one(tmp_path, capsys):
    root = write_amazon_raw(tmp_path / "amazon", n_users=30, n_items=40)
    one = train_rqvae.main(rqvae_args(root, tmp_path / "cache", tmp_path / "one") + ["--gin", "train.num_threads=1"])
    done = torchrun("train_rqvae.py", rqvae_args(root, tmp_path / "cache", tmp_path / "two"))
    lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
    assert len(lines) == 1  # rank 0 alone prints the result
    two = json.loads(lines[0])
    assert two["processes"] == 2 and one["processes"] == 1 and two["step"] == one["step"] == 6
    run = "amazon-beauty/checkpoint.pt"
    assert_same_parameters(model_state(tmp_path / "one" / run), model_state(tmp_path / "two" / run))
    a = SemanticIdTokenizer.load(tmp_path / "one/amazon-beauty/semantic_ids.pt").sem_ids
    b = SemanticIdTokenizer.load(tmp_path / "two/amazon-beauty/semantic_ids.pt").sem_ids
    assert torch.equal(a, b)
    for k in ("train_loss", "eval_reconstruction_loss", "collision_share"):
        assert two[k] == pytest.approx(one[k], rel=1e-5), k


def test_decoder_two_processes_match_one(tmp_path, capsys):
    write_amazon_raw(tmp_path / "amazon", n_users=30, n_items=N_ITEMS)
    codes = torch.randint(0, 4, (N_ITEMS, 3), generator=torch.Generator().manual_seed(0))
    SemanticIdTokenizer.from_codes(codes, codebook_size=8).save(tmp_path / "rqvae" / "amazon-beauty" / "semantic_ids.pt")
    extra = ["--gin", "train.dropout=0.0", "--gin", "train.eval_every=5"]  # no per-rank noise
    one = train_decoder.main(tiny_run_args(tmp_path, 10, extra))
    # each rank's 8 examples in micro-batches of 3, 3 and 2: gradients synchronised once per step
    two_dir = ["--gin", f'train.save_dir="{tmp_path / "two"}"', "--gin", "train.micro_batch_size=3"]
    done = torchrun("train_decoder.py", tiny_run_args(tmp_path, 10, extra + two_dir))
    lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
    assert len(lines) == 1
    two = json.loads(lines[0])
    assert_same_parameters(model_state(Path(one["last_checkpoint"])), model_state(Path(two["last_checkpoint"])))
    # validation users split over the ranks, hit counts summed: the one-process metrics
    assert [h["step"] for h in two["valid_history"]] == [5, 10]
    for h1, h2 in zip(without_wall_time(one["valid_history"]), without_wall_time(two["valid_history"])):
        assert h2 == pytest.approx(h1, abs=1e-6)
