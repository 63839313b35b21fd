import inspect
import json
from pathlib import Path

import gin
import pytest
import torch

import data.processed
import train_sasrec
from data.processed import SeqData
from data.sasrec_rows import sample_negatives, training_rows, user_item_keys
from evaluation.full_ranking import rank_all_items
from modules.sasrec import SASRec
from runtime.errors import ConfigError
from runtime.gin_cli import parse_gin_args
from tests.fixtures import write_amazon_raw

N_USERS, N_ITEMS = 30, 40


@pytest.fixture
def amazon(tmp_path):
    write_amazon_raw(tmp_path / "amazon", n_users=N_USERS, n_items=N_ITEMS)
    return tmp_path


def seq_data(root: Path, subset: str, max_seq_len: int) -> SeqData:
    return SeqData(str(root / "amazon"), "amazon", "beauty", subset, max_seq_len, str(root / "cache"))


def examples_of_rows(rows) -> list[tuple[tuple[int, ...], int]]:
    """Every trained position of every row as (the items it sees, its label)."""
    out = []
    for x, y in zip(rows.inputs.tolist(), rows.labels.tolist()):
        out += [(tuple(x[:t + 1]), y[t]) for t in range(len(y)) if y[t] >= 0]
    return sorted(out)


@pytest.mark.parametrize("max_seq_len", [3, 4, 20])
@pytest.mark.parametrize("mode", ["windows", "examples"])
def test_rows_train_exactly_tigers_examples_once(amazon, one_thread, max_seq_len, mode):
    train = seq_data(amazon, "train", max_seq_len)
    expected = sorted((tuple(h[h >= 0].tolist()), int(t)) for h, t in zip(train.histories, train.targets))
    rows = training_rows(train, mode)
    assert examples_of_rows(rows) == expected  # the same targets, the same visible histories, each once
    assert len(rows) == (len(train) if mode == "examples" else
                         N_USERS + int((train.history_lengths == max_seq_len).sum())
                         - int(torch.unique(train.user_ids[train.history_lengths == max_seq_len]).numel()))
    if mode == "windows" and max_seq_len == 20:  # no fixture user is longer than 20 + 3: one row per user
        assert len(rows) == N_USERS


def test_negatives_avoid_the_users_training_items(amazon, one_thread):
    train = seq_data(amazon, "train", 20)
    keys = user_item_keys(train)
    seen = {}  # user -> items of the training part, from the raw sequences
    for u, h, t in zip(train.user_ids.tolist(), train.histories, train.targets.tolist()):
        seen.setdefault(u, set()).update(h[h >= 0].tolist() + [t])
    assert len(keys) == sum(len(s) for s in seen.values())
    users = torch.tensor(sorted(seen)).repeat_interleave(200)
    negatives = sample_negatives(users, N_ITEMS, keys, torch.Generator().manual_seed(0))
    assert all(n not in seen[u] for u, n in zip(users.tolist(), negatives.tolist()))
    assert len(set(negatives.tolist())) == N_ITEMS  # every item is somebody's negative: no item is left out


def test_history_skipped_ranking_is_the_plain_one_without_the_history(amazon, one_thread):
    torch.manual_seed(0)
    valid = seq_data(amazon, "valid", 20)
    model = SASRec(N_ITEMS, 20, d_model=8, n_blocks=1, n_heads=1, dropout=0.5)
    ranked = rank_all_items(model, valid, 10, batch_size=7, device=torch.device("cpu"))
    scores = model.item_logits(model.last_hidden(valid.histories)).detach()
    for row in range(len(valid)):
        order = torch.argsort(scores[row], descending=True, stable=True).tolist()
        history = set(valid.histories[row][valid.histories[row] >= 0].tolist())
        assert ranked["plain"][row].tolist() == order[:10]
        assert ranked["history_skipped"][row].tolist() == [i for i in order if i not in history][:10]


def tiny_args(root: Path, extra=()) -> list[str]:
    return ["configs/sasrec_amazon.gin",
            "--gin", f'train.dataset_folder="{root / "amazon"}"', "--gin", f'train.cache_dir="{root / "cache"}"',
            "--gin", f'train.save_dir="{root / "sasrec"}"', "--gin", "train.max_seq_len=4",
            "--gin", "train.batch_size=8", "--gin", "train.iterations=12", "--gin", "train.eval_every=4",
            "--gin", "train.d_model=16", "--gin", "train.num_threads=1", "--gin", "train.patience=0", *extra]


@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_end_to_end_on_the_fixture(amazon, capsys, monkeypatch, loss):
    subsets = []
    real = data.processed.SeqData.__init__

    def spy(self, *args, **kwargs):
        subsets.append(args[3])
        real(self, *args, **kwargs)

    monkeypatch.setattr(data.processed.SeqData, "__init__", spy)
    result = train_sasrec.main(tiny_args(amazon, ["--gin", f'train.loss="{loss}"']))
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == json.loads(json.dumps(result))
    assert subsets == ["train", "valid", "test"]  # the test split is read once, after training

    folder = amazon / "sasrec" / "amazon-beauty"
    assert {p.name for p in folder.iterdir()} >= {"best.pt", "config.gin", "curve.jsonl", "result.json"}
    assert json.loads((folder / "result.json").read_text()) == json.loads(json.dumps(result))
    assert f'train.loss = \'{loss}\'' in (folder / "config.gin").read_text()
    curve = [json.loads(line) for line in (folder / "curve.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve] == [4, 8, 12] and curve == result["valid_history"]
    best = max(curve, key=lambda r: r["plain/ndcg@10"])  # the first maximum wins a tie
    assert result["best_step"] == best["step"]
    assert torch.load(folder / "best.pt", weights_only=True)["manifest"]["step"] == best["step"]
    for r in curve:
        assert r["train_loss"] > 0 and all(0 <= r[f"{p}/{m}"] <= 1 for p in ("plain", "history_skipped")
                                           for m in ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10"))
    for protocol in ("plain", "history_skipped"):
        assert set(result["test"][protocol]) == {"sasrec", "popularity", "transition"}
        for metrics in result["test"][protocol].values():
            assert 0 <= metrics["ndcg@10"] <= metrics["recall@10"] <= 1
            assert metrics["recall@1"] <= metrics["recall@5"] <= metrics["recall@10"]
    assert result["n_test_users"] == N_USERS and result["steps"] == 12


def test_patience_stops_early(amazon, capsys):
    result = train_sasrec.main(tiny_args(amazon, ["--gin", "train.patience=1", "--gin", "train.iterations=400",
                                                  "--gin", "train.eval_every=1", "--gin", "train.learning_rate=0.01"]))
    history = result["valid_history"]
    assert result["stopped_early"] and result["steps"] == history[-1]["step"] < 400
    assert history[-1]["plain/ndcg@10"] <= history[-2]["plain/ndcg@10"]  # stopped at the first non-improving one


@pytest.mark.parametrize("flag, message", [
    ('train.loss="mse"', "train.loss = 'mse': expected one of 'bce', 'ce'"),
    ("train.dropout=1.0", "train.dropout = 1.0: must be in"),
    ('train.select_protocol="skip"', "train.select_protocol"),
    ("train.n_heads=3", "not divisible"),
    ("train.batch_sise=3", "did you mean train.batch_size"),
])
def test_bad_bindings_are_named(amazon, flag, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        train_sasrec.main(tiny_args(amazon, ["--gin", flag]))


@pytest.mark.parametrize("config", sorted(Path("configs").glob("sasrec_*.gin")), ids=lambda p: p.name)
def test_every_config_parses_and_sets_every_parameter(config):
    gin.clear_config()
    parse_gin_args(train_sasrec.train, [str(config)])
    bindings = gin.get_bindings(train_sasrec.train)
    assert set(bindings) == set(inspect.signature(train_sasrec.train).parameters)
    assert bindings["loss"] == ("ce" if config.name.endswith("_ce.gin") else "bce")
    gin.clear_config()
