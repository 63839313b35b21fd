"""torchrun with 2 gloo processes on the CPU trains both stages to the parameters one process
reaches with the same global batch, and writes one set of files and one JSON line."""
import json
import os
import shutil
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


def result_line(done: subprocess.CompletedProcess) -> dict:
    lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
    assert len(lines) == 1  # rank 0 alone prints the result
    return json.loads(lines[0])


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
    args = lambda save, *extra: rqvae_args(root, tmp_path / "cache", tmp_path / save) + [a for b in extra for a in ("--gin", b)]
    run = "amazon-beauty/checkpoint.pt"

    # Step 1 from scratch: k-means++ seeds differ per rank, so rank 0's codebooks must be broadcast
    # (clusters of several items here, one Lloyd step: a rank with other codebooks has another loss).
    lr = 0.003
    first = ["train.codebook_size=16", "train.batch_size=32", "train.kmeans_iters=1", f"train.learning_rate={lr}"]
    one = train_rqvae.main(args("one", "train.num_threads=1", "train.iterations=1", *first))
    two = result_line(torchrun("train_rqvae.py", args("two", "train.iterations=1", *first)))
    assert two["processes"] == 2 and one["processes"] == 1
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-6)
    a, b = model_state(tmp_path / "one" / run), model_state(tmp_path / "two" / run)
    # A codebook fresh from k-means on the very batch it trains on has a zero gradient up to rounding, and
    # Adam's first step (lr * g / (|g| + eps)) turns that rounding, which differs with the batch split on
    # some CPUs (on an Intel Xeon a 388-wide matmul of 16 rows and of 8 rows disagree in the last bit),
    # into moves of up to the learning rate. Everything else matches.
    assert_same_parameters({k: v for k, v in a.items() if "codebook" not in k}, {k: v for k, v in b.items() if "codebook" not in k})
    for k in ("levels.0.codebook", "levels.1.codebook", "levels.2.codebook"):
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=2 * lr, msg=k)  # each run moved < lr

    # Steps 2-6 from one step-1 checkpoint in both: gradients averaged over ranks, two dead-code restarts
    # decided on rank 0 from the gathered residuals, an evaluation: the same run.
    train_rqvae.main(args("start", "train.num_threads=1", "train.iterations=1"))
    for save in ("one", "two"):
        shutil.rmtree(tmp_path / save)
        shutil.copytree(tmp_path / "start", tmp_path / save)
    resume = "train.force_resume=True"  # in another save_dir, to 6 steps
    one = train_rqvae.main(args("one", "train.num_threads=1", resume))
    two = result_line(torchrun("train_rqvae.py", args("two", resume)))
    assert two["step"] == one["step"] == 6
    assert_same_parameters(model_state(tmp_path / "one" / run), model_state(tmp_path / "two" / run))
    a = SemanticIdTokenizer.load(tmp_path / "one/amazon-beauty/semantic_ids.pt").sem_ids
    b = SemanticIdTokenizer.load(tmp_path / "two/amazon-beauty/semantic_ids.pt").sem_ids
    assert torch.equal(a, b)
    for k in ("train_loss", "eval_reconstruction_loss", "collision_share"):
        assert two[k] == pytest.approx(one[k], rel=1e-5), k


@pytest.mark.parametrize("all_positions", [False, True], ids=["per_example", "all_positions"])
def test_decoder_two_processes_match_one(tmp_path, capsys, all_positions):
    write_amazon_raw(tmp_path / "amazon", n_users=30, n_items=N_ITEMS)
    codes = torch.randint(0, 4, (N_ITEMS, 3), generator=torch.Generator().manual_seed(0))
    SemanticIdTokenizer.from_codes(codes, codebook_size=8).save(tmp_path / "rqvae" / "amazon-beauty" / "semantic_ids.pt")
    extra = ["--gin", "train.dropout=0.0", "--gin", "train.eval_every=5",  # no per-rank noise
             "--gin", f"train.all_positions={all_positions}"]  # windows: each rank's loss weighed by its share of targets
    one = train_decoder.main(tiny_run_args(tmp_path, 10, extra))
    # each rank's 8 examples (or windows) in micro-batches of 3, 3 and 2: gradients synchronised once per step
    two_dir = ["--gin", f'train.save_dir="{tmp_path / "two"}"', "--gin", "train.micro_batch_size=3"]
    done = torchrun("train_decoder.py", tiny_run_args(tmp_path, 10, extra + two_dir))
    two = result_line(done)
    assert_same_parameters(model_state(Path(one["last_checkpoint"])), model_state(Path(two["last_checkpoint"])))
    # validation users split over the ranks, hit counts summed: the one-process metrics
    assert [h["step"] for h in two["valid_history"]] == [5, 10]
    for h1, h2 in zip(without_wall_time(one["valid_history"]), without_wall_time(two["valid_history"])):
        assert h2 == pytest.approx(h1, abs=1e-6)
