"""The first ten minutes of a new user (issue 12): each probe of the issue, run as the command line
runs it (`main()` reading sys.argv), must end with one or two lines on stderr, exit status 2, no
traceback, and nothing created or changed on disk."""
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch

import data.download
import data.item_embeddings
import evaluate
import train_decoder
import train_rqvae
from runtime.checkpointing import load_checkpoint, save_checkpoint
from runtime.errors import MissingFileError
from tests.data.conftest import FakeSentenceTransformer
from tests.fixtures import write_amazon_raw
from tests.test_distributed_training import rqvae_args
from tests.test_train_decoder import stage1, tiny_run_args  # noqa: F401 (pytest fixture)

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tree(*folders: Path) -> dict[str, bytes | None]:
    """Every folder (None) and file (its bytes) under `folders`: what 'nothing changed' compares."""
    return {str(p): (p.read_bytes() if p.is_file() else None)
            for folder in folders if folder.exists() for p in sorted(folder.rglob("*"))}


@pytest.fixture
def command(monkeypatch, capsys):
    """Run an entry point as `python script.py ARGV...` would: -> (exit status, stderr)."""
    monkeypatch.delenv("TIGER_DEBUG", raising=False)

    def run(main, argv):
        monkeypatch.setattr(sys, "argv", ["script.py", *map(str, argv)])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit:
            main()
        err = capsys.readouterr().err
        message = err[err.index("error: "):] if "error: " in err else err
        assert "Traceback" not in err
        assert 1 <= len(message.strip().splitlines()) <= 2, message
        return exit.value.code, message
    return run


def gin_flags(**bindings) -> list[str]:
    return [a for name, value in bindings.items() for a in ("--gin", f"train.{name}={value}")]


def paths(tmp_path: Path, root: str = "data") -> list[str]:
    return gin_flags(dataset_folder=f'"{tmp_path / root}"', cache_dir=f'"{tmp_path / "cache"}"',
                     save_dir=f'"{tmp_path / "out"}"', num_threads=1)


# ---------------------------------------------------------------- no data, no network

@pytest.mark.parametrize("config, folder, manual", [
    ("configs/rqvae_amazon.gin", "raw/beauty",
     "Offline: unzip P5_data.zip (Google Drive, linked from github.com/jeykigung/P5) and move its data/beauty/ folder to"),
    ("configs/rqvae_ml1m.gin", "raw/ml-1m", "Offline: unzip ml-1m.zip (https://files.grouplens.org/datasets/movielens/"
                                            "ml-1m.zip) inside"),
])
def test_missing_raw_files_without_network(tmp_path, monkeypatch, command, config, folder, manual):
    def no_network(url, folder, log=True, filename=None):
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(data.download, "download_url", no_network)
    status, message = command(train_rqvae.main, [config, *paths(tmp_path)])
    assert status == 2
    first, second = message.splitlines()
    files = "sequential_data.txt, datamaps.json, meta.json.gz" if "amazon" in config else "ratings.dat, movies.dat"
    assert first.startswith(f"error: {tmp_path / 'data' / folder} lacks {files} (data root '{tmp_path / 'data'}', "
                            "set by train.dataset_folder (python -m data: --root)), and downloading ")
    assert first.endswith("failed ([Errno -2] Name or service not known).")
    assert second.startswith(manual)
    assert tree(tmp_path) == {}  # no raw folder, no cache, no run folder


# ---------------------------------------------------------------- arguments and bindings

@pytest.mark.parametrize("main, config", [(train_rqvae.main, "configs/rqvae_amazon.gin"),
                                          (train_decoder.main, "configs/decoder_amazon.gin"),
                                          (evaluate.main, "configs/decoder_amazon.gin")])
def test_plain_flag_is_refused_with_the_gin_form(tmp_path, command, main, config):
    status, message = command(main, [config, *paths(tmp_path), "--iterations", "30"])
    assert status == 2
    assert message.strip() == ("error: unrecognized argument(s): --iterations 30; bindings are set with --gin, "
                               "e.g. --gin 'train.iterations=30' (see --help)")
    assert tree(tmp_path) == {}


def test_missing_config_file_is_no_such_file(tmp_path, command):
    status, message = command(train_rqvae.main, ["configs/nope.gin", *paths(tmp_path)])
    assert status == 2
    assert message.strip() == ("error: no such file: configs/nope.gin (the config file argument; the project's "
                               "configs are in configs/)")
    assert tree(tmp_path) == {}


def test_misspelled_binding_names_the_flag_not_the_file(tmp_path, command):
    status, message = command(train_rqvae.main, ["configs/rqvae_amazon.gin", *paths(tmp_path),
                                                 "--gin", "train.learnin_rate=0.1"])
    assert status == 2
    assert message.strip() == ("error: --gin 'train.learnin_rate=0.1': Configurable 'train' doesn't have a parameter "
                               "named 'learnin_rate'. (did you mean train.learning_rate?)")
    assert tree(tmp_path) == {}


@pytest.mark.parametrize("main, config, binding, expected", [
    (train_rqvae.main, "configs/rqvae_amazon.gin", "batch_size=-5", "train.batch_size = -5: must be positive"),
    (train_rqvae.main, "configs/rqvae_amazon.gin", "batch_size=0", "train.batch_size = 0: must be positive"),
    (train_rqvae.main, "configs/rqvae_amazon.gin", "eval_every=0", "train.eval_every = 0: must be positive"),
    (train_rqvae.main, "configs/rqvae_amazon.gin", "iterations=0", "train.iterations = 0: must be positive"),
    (train_rqvae.main, "configs/rqvae_amazon.gin", "hidden_dims=(512, 0)", "train.hidden_dims = (512, 0): must be positive"),
    (train_rqvae.main, "configs/rqvae_amazon.gin", 'forward_mode="straight"',
     "train.forward_mode = 'straight': expected one of 'ste', 'gumbel', 'rotation'"),
    (train_decoder.main, "configs/decoder_amazon.gin", "eval_every=0", "train.eval_every = 0: must be positive"),
    (train_decoder.main, "configs/decoder_amazon.gin", "learning_rate=-0.01", "train.learning_rate = -0.01: must be positive"),
    (train_decoder.main, "configs/decoder_amazon.gin", "dropout=1.0", "train.dropout = 1.0: must be in [0, 1)"),
    (train_decoder.main, "configs/decoder_amazon.gin", "history_crop=1.5", "train.history_crop = 1.5: must be in [0, 1]"),
    (train_decoder.main, "configs/decoder_amazon.gin", "successor_token=True",
     "train.successor_token = True needs train.item_tokens = True (it is a second item table)"),
    (train_decoder.main, "configs/decoder_amazon_cpu_allpos.gin", "successor_token=True",
     "train.successor_token = True does not combine with train.all_positions = True (a window has no one most "
     "recent item): bind one of them"),
    (train_decoder.main, "configs/decoder_amazon.gin", "ema_decay=1.0",
     "train.ema_decay = 1.0: must be in [0, 1) (0: no averaging)"),
    (train_decoder.main, "configs/decoder_amazon.gin", "lr_ramp_steps=-1", "train.lr_ramp_steps = -1: must be >= 0"),
    (train_decoder.main, "configs/decoder_amazon.gin", "lr_constant_steps=0",
     "train.lr_constant_steps = 0: must be positive"),
    (train_decoder.main, "configs/decoder_amazon.gin", 'optimizer="sgd"',
     "train.optimizer = 'sgd': expected one of 'adamw', 'adafactor'"),
    (train_decoder.main, "configs/decoder_amazon.gin", 'precision="fp16"',
     "train.precision = 'fp16': expected one of 'auto', 'bf16', 'fp32'"),
    (train_decoder.main, "configs/decoder_amazon.gin", 'compile_mode="fast"',
     "train.compile_mode = 'fast': expected one of 'default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs'"),
])
def test_bad_numbers_name_the_binding_and_its_flag(tmp_path, command, main, config, binding, expected):
    status, message = command(main, [config, *paths(tmp_path), "--gin", f"train.{binding}"])
    assert status == 2
    assert message.strip() == f"error: {expected} (set by --gin 'train.{binding}')"
    assert tree(tmp_path) == {}


def test_bad_number_in_a_config_file_names_the_file(tmp_path, command):
    config = tmp_path / "mine.gin"
    config.write_text(Path("configs/rqvae_amazon_smoke.gin").read_text() + "train.batch_size = 0\n")
    before = tree(tmp_path)
    status, message = command(train_rqvae.main, [config, *paths(tmp_path)])
    assert status == 2 and message.strip() == f"error: train.batch_size = 0: must be positive (set in {config})"
    assert tree(tmp_path) == before


# ---------------------------------------------------------------- raw data checked before anything is cached

def cut_to_half_the_users(folder: Path) -> None:
    lines = (folder / "sequential_data.txt").read_text().splitlines(keepends=True)
    (folder / "sequential_data.txt").write_text("".join(lines[:len(lines) // 2]))


def garble_line_7(folder: Path) -> None:
    lines = (folder / "sequential_data.txt").read_text().splitlines(keepends=True)
    lines[6] = lines[6].replace(" ", " x", 1)
    (folder / "sequential_data.txt").write_text("".join(lines))


def meta_not_gzip(folder: Path) -> None:
    (folder / "meta.json.gz").write_text("{'asin': 'B000000001'}\n")


def meta_truncated(folder: Path) -> None:
    data = (folder / "meta.json.gz").read_bytes()
    (folder / "meta.json.gz").write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize("damage, expected", [
    (cut_to_half_the_users, "sequential_data.txt has 15 user lines but datamaps.json lists 30 users (id2user): the file "
                            "is truncated, or the two files come from different releases"),
    (garble_line_7, "sequential_data.txt:7: 'x"),
    (meta_not_gzip, "meta.json.gz: not a readable gzip file from its start (truncated, or not gzip: BadGzipFile: "
                    "Not a gzipped file"),
    (meta_truncated, "meta.json.gz: not a readable gzip file after line "),
], ids=lambda x: getattr(x, "__name__", ""))
def test_bad_raw_data_is_refused_before_anything_is_cached(tmp_path, command, damage, expected):
    root = write_amazon_raw(tmp_path / "data", n_users=30, n_items=40)
    folder = root / "raw" / "beauty"
    damage(folder)
    before = tree(tmp_path)
    status, message = command(train_rqvae.main, ["configs/rqvae_amazon_smoke.gin", *paths(tmp_path)])
    assert status == 2
    assert message.startswith(f"error: {folder}/{expected}")
    assert tree(tmp_path) == before  # no cache, no run folder


# ---------------------------------------------------------------- too short an RQ-VAE run

@pytest.fixture
def fake_encoder(monkeypatch):
    """Hashed vectors instead of the sentence encoder: loading it costs more than these runs."""
    monkeypatch.setattr(data.item_embeddings, "SentenceTransformer", FakeSentenceTransformer)


def test_too_few_rqvae_steps_say_how_to_continue(tmp_path, command, fake_encoder):
    write_amazon_raw(tmp_path / "data", n_users=30, n_items=40)
    # 2 codes per level: 8 three-code prefixes for 40 items, so some prefix holds more than 2 items
    argv = rqvae_args(tmp_path / "data", tmp_path / "cache", tmp_path / "out") + gin_flags(
        codebook_size=2, iterations=4, num_threads=1)
    status, message = command(train_rqvae.main, argv)
    assert status == 2
    first, second = message.splitlines()
    assert first.startswith("error: after 4 steps ") and "items share one 3-code prefix, more than the 2 collision " \
        "tokens (train.codebook_size) can tell apart: no semantic_ids.pt was written." in first
    run = tmp_path / "out" / "amazon-beauty"
    assert second == (f"Train longer: rerun with a larger train.iterations (now 4; it resumes from {run / 'checkpoint.pt'}). "
                      "On Beauty 200 steps are enough (configs/rqvae_amazon_smoke.gin), 900 give 3.7% collisions "
                      "(set by --gin 'train.iterations=4')")
    assert not (run / "semantic_ids.pt").exists() and (run / "checkpoint.pt").is_file()  # kept: the rerun resumes


# ---------------------------------------------------------------- resume with other evaluation settings

def test_decoder_resumes_with_other_evaluation_settings_and_ends_where_a_straight_run_does(stage1):
    straight = train_decoder.main(tiny_run_args(stage1, 30, ["--gin", f'train.save_dir="{stage1 / "straight"}"']))
    train_decoder.main(tiny_run_args(stage1, 20))  # eval_every=10
    resumed = train_decoder.main(tiny_run_args(stage1, 30, gin_flags(eval_every=15, eval_beam_width=12,
                                                                      valid_max_users=20)))
    assert [h["step"] for h in resumed["valid_history"]] == [10, 20, 30]
    a = torch.load(stage1 / "straight" / "amazon-beauty" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(stage1 / "decoder" / "amazon-beauty" / "checkpoint.pt", weights_only=True)["model"]
    assert straight["steps"] == resumed["steps"] == 30 and all(torch.equal(a[k], b[k]) for k in a)


def test_rqvae_resumes_with_other_evaluation_settings(tmp_path, fake_encoder):
    root = write_amazon_raw(tmp_path / "data", n_users=30, n_items=40)
    argv = rqvae_args(root, tmp_path / "cache", tmp_path / "out") + gin_flags(num_threads=1)
    train_rqvae.main(argv + gin_flags(iterations=3))
    resumed = train_rqvae.main(argv + gin_flags(iterations=6, eval_every=2, checkpoint_every=2))
    assert resumed["step"] == 6


# ---------------------------------------------------------------- damaged files and missing runs

def test_damaged_checkpoint_is_one_line(stage1, command):
    train_decoder.main(tiny_run_args(stage1, 10))
    path = stage1 / "decoder" / "amazon-beauty" / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:1000])
    before = tree(stage1)
    status, message = command(train_decoder.main, tiny_run_args(stage1, 20))
    assert status == 2 and message.startswith(f"error: checkpoint {path} is truncated or corrupted and was not loaded")
    assert tree(stage1) == before


def test_evaluate_without_a_trained_run(stage1, command):
    before = tree(stage1)
    status, message = command(evaluate.main, tiny_run_args(stage1, 10))
    best = stage1 / "decoder" / "amazon-beauty" / "best.pt"
    assert status == 2 and message.strip() == (f"error: no checkpoint at {best}: run train_decoder.py with this config "
                                                f"first (train.save_dir='{stage1 / 'decoder'}')")
    assert tree(stage1) == before


def test_evaluate_refuses_a_binding_the_decoder_does_not_have(stage1, command):
    train_decoder.main(tiny_run_args(stage1, 10))
    before = tree(stage1)
    status, message = command(evaluate.main, tiny_run_args(stage1, 10, ["--gin", "train.eval_beam_widht=20"]))
    best = stage1 / "decoder" / "amazon-beauty" / "best.pt"
    assert status == 2 and message.strip() == (
        f"error: train.eval_beam_widht is not a parameter of the decoder run in {best} (did you mean "
        "train.eval_beam_width?) (set by --gin 'train.eval_beam_widht=20')")
    assert tree(stage1) == before


def test_evaluate_reads_a_run_recorded_before_a_config_file_parameter_existed(stage1, tmp_path):
    # A run trained before train.micro_batch_size existed has no such binding in best.pt; the updated
    # config file binds it. Evaluation never reads it: the config file's binding is accepted (a --gin
    # flag naming a parameter the run lacks is still refused, above: usually a typo).
    train_decoder.main(tiny_run_args(stage1, 10))
    config = tmp_path / "decoder_newer.gin"
    config.write_text(Path("configs/decoder_amazon.gin").read_text() + "train.a_parameter_added_later = 4\n")
    args = tiny_run_args(stage1, 10)
    result = evaluate.main([str(config), *args[1:], "--split", "valid"])
    assert result["users"] == 30 and {"recall@10", "ndcg@10"} <= set(result["tiger"])


def test_decoder_batch_larger_than_the_data_names_the_binding(stage1, command):
    train_decoder.main(tiny_run_args(stage1, 10, ["--gin", 'train.save_dir="%s"' % (stage1 / "first")]))  # caches built
    before = tree(stage1)
    status, message = command(train_decoder.main, tiny_run_args(stage1, 10, ["--gin", "train.batch_size=100000"]))
    assert status == 2 and message.strip() == ("error: train.batch_size = 100000 exceeds the 170 training examples "
                                               "(set by --gin 'train.batch_size=100000')")
    assert tree(stage1) == before


def test_evaluate_checks_the_precision_it_is_given(stage1, command):
    train_decoder.main(tiny_run_args(stage1, 10))
    before = tree(stage1)
    status, message = command(evaluate.main, tiny_run_args(stage1, 10, ["--gin", 'train.precision="fp16"']))
    assert status == 2 and message.strip() == (
        "error: train.precision = 'fp16': expected one of 'auto', 'bf16', 'fp32' (set by --gin 'train.precision=\"fp16\"')")
    assert tree(stage1) == before


def trained_run_without(stage1, binding: str) -> tuple:
    """A 10-step decoder run whose best.pt is rewritten as if train.<binding> had not existed yet
    -> (best.pt path, its manifest)."""
    train_decoder.main(tiny_run_args(stage1, 10))
    best = stage1 / "decoder" / "amazon-beauty" / "best.pt"
    state = load_checkpoint(best)
    manifest = state.pop("manifest")
    del manifest["bindings"][binding]
    save_checkpoint(best, state, step=manifest["step"], bindings=manifest["bindings"], metrics=manifest.get("metrics"))
    return best, manifest


def test_evaluate_asks_for_a_setting_an_older_run_did_not_record(stage1, command):
    """A best.pt from before train.precision existed, read with a config that does not bind it."""
    best, _ = trained_run_without(stage1, "precision")
    config = stage1 / "old.gin"
    config.write_text("\n".join(line for line in Path(tiny_run_args(stage1, 10)[0]).read_text().splitlines()
                                if not line.startswith("train.precision")))
    before = tree(stage1)
    status, message = command(evaluate.main, [config, *tiny_run_args(stage1, 10)[1:]])
    assert status == 2 and message.strip() == (
        f"error: {best} records no train.precision and {config} does not bind it: "
        "add --gin 'train.precision=...' (see train_decoder.py's train())")
    assert tree(stage1) == before


def test_evaluate_takes_an_evaluation_setting_newer_than_the_run_from_the_config(stage1):
    """A best.pt from before train.eval_exclude_history existed, read with a config that binds it."""
    _, manifest = trained_run_without(stage1, "eval_exclude_history")
    result = evaluate.main(tiny_run_args(stage1, 10, ["--gin", "train.eval_exclude_history=False"]))
    assert result["checkpoint_step"] == manifest["step"] and result["users"] > 0


# ---------------------------------------------------------------- --help and --user

@pytest.mark.parametrize("main, first_lines, options", [
    (train_rqvae.main, ["Stage 1 of TIGER: train the RQ-VAE and turn every item into a semantic ID.", "",
                        "    python train_rqvae.py configs/rqvae_amazon.gin [--gin 'train.iterations=1000' ...]"],
     ["--gin BINDING", "--debug"]),
    (train_decoder.main, ["Stage 2 of TIGER: train the encoder-decoder that generates the next item's semantic ID.", "",
                          "    python train_decoder.py configs/decoder_amazon.gin [--gin 'train.iterations=1000' ...]"],
     ["--gin BINDING", "--debug"]),
    (evaluate.main, ["Evaluate a trained TIGER model next to the popularity and transition baselines.", ""],
     ["--gin BINDING", "--debug", "--split {valid,test}", "--write-topk FILE", "--user USER_ID", "--beam-width N",
      "--batch-size N"]),
], ids=["train_rqvae", "train_decoder", "evaluate"])
def test_help_keeps_the_docstring_layout_and_lists_options_and_bindings(monkeypatch, capsys, main, first_lines, options):
    monkeypatch.setattr(sys, "argv", ["script.py", "--help"])
    with pytest.raises(SystemExit) as exit:
        main()
    out = capsys.readouterr().out
    assert exit.value.code == 0
    lines = out.splitlines()
    start = lines.index(first_lines[0])
    assert lines[start:start + len(first_lines)] == first_lines  # not re-wrapped into one paragraph
    for option in options:
        assert option in out, option
    for binding in ("train.dataset_folder", "train.cache_dir", "train.save_dir", "train.device"):
        assert f"  {binding} " in out, binding
    assert ("train.iterations " in out) == (main is not evaluate.main)


def test_evaluate_user_beam_searches_that_user_alone(stage1, monkeypatch, capsys):
    train_decoder.main(tiny_run_args(stage1, 20))
    everyone = evaluate.main(tiny_run_args(stage1, 20, ["--write-topk", str(stage1 / "topk.jsonl"), "--user", "3"]))
    searched = []
    real = evaluate.recommend
    monkeypatch.setattr(evaluate, "recommend", lambda *a, **kw: searched.append(kw["index"]) or real(*a, **kw))
    alone = evaluate.main(tiny_run_args(stage1, 20, ["--user", "3"]))
    assert len(searched) == 1 and len(searched[0]) == 1  # one beam search, of one user
    assert {k: alone["user"][k] for k in ("user_id", "history", "target")} == \
        {k: everyone["user"][k] for k in ("user_id", "history", "target")} and alone["user"]["user_id"] == 3
    recommended = lambda result: [(r["item_id"], r["title"]) for r in result["user"]["recommendations"]]
    assert recommended(alone) == recommended(everyone)  # the same top-10 as in the batched search of every user
    assert [r["score"] for r in alone["user"]["recommendations"]] == pytest.approx(
        [r["score"] for r in everyone["user"]["recommendations"]], abs=2e-4)
    assert "tiger" not in alone  # no metrics over one user
    assert "recommendations:" in capsys.readouterr().err


# ---------------------------------------------------------------- the real command line

def test_real_command_line_exit_status(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("TIGER_DEBUG", None)
    done = subprocess.run([sys.executable, "train_rqvae.py", "configs/nope.gin"], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 2
    assert done.stderr == "error: no such file: configs/nope.gin (the config file argument; the project's configs are in configs/)\n"


@pytest.mark.parametrize("switch", ["--debug", "TIGER_DEBUG=1"])
def test_debug_shows_the_exception(monkeypatch, switch):
    monkeypatch.setattr(sys, "argv", ["train_rqvae.py", "configs/nope.gin"] + ([switch] if switch == "--debug" else []))
    if switch != "--debug":
        monkeypatch.setenv("TIGER_DEBUG", "1")
    with pytest.raises(MissingFileError, match="no such file: configs/nope.gin"):  # propagates: a traceback
        train_rqvae.main()


def test_a_bad_custom_data_set_is_one_line_naming_file_and_line(tmp_path, command):
    """Your own data's errors reach the user as Amazon's do: one line, status 2, no traceback."""
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "interactions.csv").write_text("user_id,item_id,timestamp\nu1,i1,1\nu1,i2,yesterday-ish\nu1,i3,3\n")
    (folder / "items.csv").write_text("item_id,text\ni1,a\ni2,b\ni3,c\n")
    status, message = command(train_rqvae.main, ["configs/rqvae_custom.gin", "--gin", f'train.dataset_folder="{folder}"',
                                                 "--gin", f'train.cache_dir="{tmp_path / "cache"}"',
                                                 "--gin", f'train.save_dir="{tmp_path / "out"}"'])
    assert status == 2 and "interactions.csv" in message and "timestamp" in message
