"""Crash safety and bad input: a SIGKILLed run resumes to the uninterrupted result; every bad input
gives an error naming what is wrong and leaves existing checkpoints and caches byte-identical."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import train_decoder
import train_rqvae
from data.amazon import load_amazon
from runtime.errors import CacheError
from runtime.checkpointing import CheckpointError
from runtime.errors import ConfigError
from runtime.loss_watch import NonFiniteLossError
from modules.tokenizer import SemanticIdTokenizer
from tests.fixtures import write_amazon_raw, without_wall_time
from tests.test_distributed_training import rqvae_args
from tests.test_train_decoder import N_ITEMS, tiny_run_args

REPO = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def snapshot(*folders: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def stage1(tmp_path: Path) -> Path:
    write_amazon_raw(tmp_path / "amazon", n_users=30, n_items=N_ITEMS)
    codes = torch.randint(0, 4, (N_ITEMS, 3), generator=torch.Generator().manual_seed(0))
    SemanticIdTokenizer.from_codes(codes, codebook_size=8).save(tmp_path / "rqvae" / "amazon-beauty" / "semantic_ids.pt")
    return tmp_path


# ---------------------------------------------------------------- kill -9 and resume

def run_killed_after_first_checkpoint(script: str, argv: list[str], checkpoint: Path) -> int:
    """Start `script argv` as a subprocess, SIGKILL it once its first checkpoint exists; return that step."""
    proc = subprocess.Popen([sys.executable, script, *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    manifest = checkpoint.with_suffix(".json")
    try:
        deadline = time.time() + 120
        while not manifest.exists():
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.time() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    return json.loads(manifest.read_text())["step"]


def rerun(script: str, argv: list[str]) -> dict:
    done = subprocess.run([sys.executable, script, *argv], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_decoder_killed_and_rerun_ends_like_an_uninterrupted_run(tmp_path):
    root = stage1(tmp_path)
    argv = lambda save: tiny_run_args(root, 300, ["--gin", "train.eval_every=20", "--gin", f'train.save_dir="{save}"'])
    straight = train_decoder.main(argv(root / "straight"))
    killed_at = run_killed_after_first_checkpoint("train_decoder.py", argv(root / "killed"),
                                                  root / "killed" / "amazon-beauty" / "checkpoint.pt")
    assert 20 <= killed_at < 300  # the kill landed mid-run
    resumed = rerun("train_decoder.py", argv(root / "killed"))
    for k in ("best_step", "best_valid", "steps"):  # dropout included: RNG states resume too
        assert resumed[k] == straight[k], k
    assert without_wall_time(resumed["valid_history"]) == without_wall_time(straight["valid_history"])
    a = torch.load(straight["last_checkpoint"], weights_only=True)["model"]
    b = torch.load(resumed["last_checkpoint"], weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_rqvae_killed_and_rerun_ends_like_an_uninterrupted_run(tmp_path):
    root = write_amazon_raw(tmp_path / "amazon", n_users=30, n_items=40)
    argv = lambda save: rqvae_args(root, tmp_path / "cache", save) + [
        "--gin", "train.iterations=400", "--gin", "train.checkpoint_every=10", "--gin", "train.eval_every=100",
        "--gin", "train.num_threads=1"]
    straight = train_rqvae.main(argv(tmp_path / "straight"))
    killed_at = run_killed_after_first_checkpoint("train_rqvae.py", argv(tmp_path / "killed"),
                                                  tmp_path / "killed" / "amazon-beauty" / "checkpoint.pt")
    assert 10 <= killed_at < 400
    resumed = rerun("train_rqvae.py", argv(tmp_path / "killed"))
    for k in ("step", "last_train_loss", "eval_reconstruction_loss", "collision_share"):
        assert resumed[k] == straight[k], k
    assert torch.equal(SemanticIdTokenizer.load(straight["semantic_ids"]).sem_ids,
                       SemanticIdTokenizer.load(resumed["semantic_ids"]).sem_ids)


# ---------------------------------------------------------------- NaN / inf loss

def nan_from_call(n: int):
    """A loss wrapper that turns the loss into NaN from its n-th call on (an injected divergence)."""
    calls = [0]

    def poison(loss: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return loss * float("nan") if calls[0] >= n else loss
    return poison


def test_decoder_nan_loss_stops_names_the_step_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    root = stage1(tmp_path)
    train_decoder.main(tiny_run_args(root, 10))
    run = root / "decoder" / "amazon-beauty"
    before = snapshot(run)
    poison, loss = nan_from_call(3), train_decoder.EncoderDecoderRetrievalModel.loss
    monkeypatch.setattr(train_decoder.EncoderDecoderRetrievalModel, "loss", lambda *a: poison(loss(*a)))
    # resumed at step 10: the 3rd loss is step 13's; the check at step 20 (evaluation) stops the run
    with pytest.raises(NonFiniteLossError, match=r"NaN or infinite at step 13;.*checkpoint\.pt \(step 10\) was kept"):
        train_decoder.main(tiny_run_args(root, 20))
    weights = lambda snap: {k: v for k, v in snap.items() if not k.endswith("config.gin")}  # config.gin: the new command's
    assert weights(snapshot(run)) == weights(before)  # checkpoint.pt, its manifest and best.pt untouched


def test_infinite_learning_rate_stops_before_any_checkpoint(tmp_path):
    root = stage1(tmp_path)
    # step 1 sees finite weights; its update with lr = inf makes them inf/NaN: step 2's loss is the first bad one.
    # AdamW: the paper config's Adafactor caps its step at 1/sqrt(step), so an infinite rate would stay finite there.
    bad_rate = ["--gin", 'train.optimizer="adamw"', "--gin", "train.learning_rate=1e999"]
    with pytest.raises(NonFiniteLossError, match="at step 2; stopped before writing a checkpoint: no checkpoint"):
        train_decoder.main(tiny_run_args(root, 20, bad_rate))
    assert not list((root / "decoder").rglob("*.pt"))


def test_rqvae_nan_loss_stops_names_the_step_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    root = write_amazon_raw(tmp_path / "amazon", n_users=30, n_items=40)
    argv = rqvae_args(root, tmp_path / "cache", tmp_path / "out") + ["--gin", "train.num_threads=1"]
    train_rqvae.main(argv + ["--gin", "train.iterations=3"])
    run = tmp_path / "out" / "amazon-beauty"
    before = snapshot(run)
    poison, forward = nan_from_call(2), train_rqvae.RqVae.forward
    monkeypatch.setattr(train_rqvae.RqVae, "forward",
                        lambda self, *a: (lambda out: out._replace(loss=poison(out.loss)))(forward(self, *a)))
    with pytest.raises(NonFiniteLossError, match=r"at step 5;.*checkpoint\.pt \(step 3\) was kept"):
        train_rqvae.main(argv)  # resumes at step 3: the 2nd forward is step 5's, the check at step 6 stops it
    weights = lambda snap: {k: v for k, v in snap.items() if not k.endswith("config.gin")}
    assert weights(snapshot(run)) == weights(before)


# ---------------------------------------------------------------- bad input, nothing lost

@pytest.fixture
def finished_decoder_run(tmp_path):
    root = stage1(tmp_path)
    train_decoder.main(tiny_run_args(root, 10))
    return root


def test_decoder_bad_input_is_refused_and_nothing_changes(finished_decoder_run):
    root = finished_decoder_run
    kept = lambda: snapshot(root / "decoder", root / "cache", root / "rqvae")
    before = kept()
    cases = [
        (["--gin", "train.not_a_parameter=1"], ConfigError, "not_a_parameter"),
        (["--gin", 'train.batch_size="large"'], ConfigError, "train.batch_size"),
        (["--gin", "train.d_model=48"], CheckpointError, r"train\.d_model: 32 -> 48"),
    ]
    for extra, error, message in cases:
        with pytest.raises(error, match=message):
            train_decoder.main(tiny_run_args(root, 20, extra))
        assert kept() == before, extra

    # a retrained tokenizer under the same path: resuming would silently change every target
    tokenizer_path = root / "rqvae" / "amazon-beauty" / "semantic_ids.pt"
    original = tokenizer_path.read_bytes()
    codes = torch.randint(0, 4, (N_ITEMS, 3), generator=torch.Generator().manual_seed(1))
    SemanticIdTokenizer.from_codes(codes, codebook_size=8).save(tokenizer_path)
    before = kept()
    with pytest.raises(CheckpointError, match=r"semantic_ids\.pt is not the tokenizer it was trained with"):
        train_decoder.main(tiny_run_args(root, 20))
    assert kept() == before
    tokenizer_path.write_bytes(original)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_checkpoint_is_detected_not_loaded(finished_decoder_run, damage):
    root = finished_decoder_run
    path = root / "decoder" / "amazon-beauty" / "checkpoint.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else
                     data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:])
    before = snapshot(root / "decoder", root / "cache")
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        train_decoder.main(tiny_run_args(root, 20))
    assert snapshot(root / "decoder", root / "cache") == before  # nothing overwritten, config.gin included


@pytest.mark.parametrize("name", ["items.pt", "interactions.parquet", "item_embeddings"])
def test_damaged_cache_is_detected_with_rebuild_advice(tmp_path, name):
    root = write_amazon_raw(tmp_path / "amazon", n_users=30, n_items=40)
    argv = rqvae_args(root, tmp_path / "cache", tmp_path / "out") + ["--gin", "train.iterations=2", "--gin", "train.num_threads=1"]
    train_rqvae.main(argv)
    path = next(p for p in (tmp_path / "cache").rglob("*") if p.name.startswith(name))
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 8] = bytes(b ^ 0x5A for b in data[middle:middle + 8])  # a few flipped bits inside
    path.write_bytes(bytes(data))
    before = snapshot(tmp_path / "out", tmp_path / "cache")
    with pytest.raises(CacheError, match=re.escape(str(path)) + ".*force-process"):
        train_rqvae.main(argv + ["--gin", "train.iterations=4"])
    assert snapshot(tmp_path / "out", tmp_path / "cache") == before


def test_rqvae_resume_on_features_of_another_dimension_is_refused(tmp_path):
    root = write_amazon_raw(tmp_path / "amazon", n_users=30, n_items=40)
    argv = rqvae_args(root, tmp_path / "cache", tmp_path / "out") + ["--gin", "train.iterations=2", "--gin", "train.num_threads=1"]
    train_rqvae.main(argv)
    # another encoder's vectors: the binding differs, so the resume is refused naming it
    with pytest.raises(CheckpointError, match="train.encoder_model"):
        train_rqvae.main(argv + ["--gin", 'train.encoder_model="some/other-encoder"'])
    # the same binding but the cached vectors now have another width (e.g. a replaced cache)
    from data.item_embeddings import tensor_sha256

    cache = next((tmp_path / "cache").rglob("item_embeddings_*.pt"))
    state = torch.load(cache, weights_only=True)
    state["embeddings"] = torch.randn(40, 16)
    state["sha256"] = tensor_sha256(state["embeddings"])
    torch.save(state, cache)
    before = snapshot(tmp_path / "out")
    with pytest.raises(CheckpointError, match=r"388-d item features but .* gives 20-d"):  # 4 collaborative dims each
        train_rqvae.main(argv + ["--gin", "train.iterations=4"])
    assert snapshot(tmp_path / "out") == before


def test_rqvae_bad_gin_leaves_the_run_alone(tmp_path):
    root = write_amazon_raw(tmp_path / "amazon", n_users=30, n_items=40)
    argv = rqvae_args(root, tmp_path / "cache", tmp_path / "out") + ["--gin", "train.iterations=2", "--gin", "train.num_threads=1"]
    train_rqvae.main(argv)
    before = snapshot(tmp_path / "out", tmp_path / "cache")
    for extra, error, message in [(["--gin", "train.learning_rat=0.1"], ConfigError, "learning_rat"),
                                  (["--gin", "train.latent_dim=9"], CheckpointError, r"train\.latent_dim: 8 -> 9")]:
        with pytest.raises(error, match=message):
            train_rqvae.main(argv + extra)
        assert snapshot(tmp_path / "out", tmp_path / "cache") == before


# ---------------------------------------------------------------- raw sequences

@pytest.mark.parametrize("line, message", [
    ("", r"sequential_data\.txt:4: expected .* got 0 item\(s\)"),
    ("4 3 7", r"sequential_data\.txt:4: expected .* got 2 item\(s\)"),
    ("4 3 7 99 1", r"sequential_data\.txt:4: item id 99 is not in datamaps\.json"),
])
def test_bad_sequence_line_names_file_line_and_id(tmp_path, line, message):
    root = write_amazon_raw(tmp_path, n_users=6, n_items=10)
    path = root / "raw" / "beauty" / "sequential_data.txt"
    lines = path.read_text().splitlines()
    lines[3] = line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=message):
        load_amazon(root, "beauty")


# ---------------------------------------------------------------- untrusted files

def test_no_eval_and_every_torch_load_is_weights_only():
    sources = [p for p in REPO.rglob("*.py") if ".venv" not in p.parts and p.name != Path(__file__).name]
    assert len(sources) > 30
    for path in sources:
        text = path.read_text()
        assert not re.search(r"(?<![\w.])eval\(", text), f"{path}: eval("
        for call in re.findall(r"torch\.load\((?:[^()]|\([^()]*\))*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
