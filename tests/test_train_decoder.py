import json
from pathlib import Path

import pytest
import torch

import data.processed
from data.processed import SeqData
import evaluate  # at import time: it registers its gin configurable, refused once a run locks the config
import train_decoder
from runtime.checkpointing import CheckpointError
from modules.tokenizer import SemanticIdTokenizer
from tests.fixtures import write_amazon_raw

N_ITEMS = 40


def tiny_run_args(tmp_path, iterations, extra=()):
    """A tiny stage-2 run on the fixture data set; every path under tmp_path."""
    return ["configs/decoder_amazon.gin",
            "--gin", f'train.dataset_folder="{tmp_path / "amazon"}"',
            "--gin", f'train.cache_dir="{tmp_path / "cache"}"',
            "--gin", f'train.tokenizer_dir="{tmp_path / "rqvae"}"',
            "--gin", f'train.save_dir="{tmp_path / "decoder"}"',
            "--gin", f"train.iterations={iterations}", "--gin", "train.eval_batch_size=8",
            "--gin", "train.batch_size=16", "--gin", "train.eval_every=10", "--gin", "train.lr_constant_steps=5",
            "--gin", "train.learning_rate=0.003", "--gin", "train.d_model=32", "--gin", "train.n_heads=2",
            "--gin", "train.d_head=16", "--gin", "train.ff_dim=64", "--gin", "train.n_encoder_layers=1",
            "--gin", "train.n_decoder_layers=1", "--gin", "train.device=\"cpu\"",
            "--gin", "train.num_threads=1", *extra]


@pytest.fixture
def stage1(tmp_path):
    """Fixture raw data plus a stage-1 tokenizer file, as train_rqvae.py would leave them."""
    write_amazon_raw(tmp_path / "amazon", n_users=30, n_items=N_ITEMS)
    codes = torch.randint(0, 4, (N_ITEMS, 3), generator=torch.Generator().manual_seed(0))
    SemanticIdTokenizer.from_codes(codes, codebook_size=8).save(tmp_path / "rqvae" / "amazon-beauty" / "semantic_ids.pt")
    return tmp_path


def run(args, capsys):
    result = train_decoder.main(args)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == json.loads(json.dumps(result))  # the last stdout line is the JSON result
    return result


def test_trains_selects_on_validation_only_and_never_reads_test(stage1, capsys, monkeypatch):
    subsets = []
    real = data.processed.SeqData.__init__

    def spy(self, *args, **kwargs):
        subsets.append(kwargs.get("subset", args[3] if len(args) > 3 else "train"))
        real(self, *args, **kwargs)

    monkeypatch.setattr(data.processed.SeqData, "__init__", spy)
    result = run(tiny_run_args(stage1, 30), capsys)
    assert "test" not in subsets and "valid" in subsets
    steps = [h["step"] for h in result["valid_history"]]
    assert steps == [10, 20, 30]
    best = max(result["valid_history"], key=lambda h: h["ndcg@10"])  # first maximum wins ties
    assert result["best_step"] == best["step"]
    saved = torch.load(result["best_checkpoint"], weights_only=True)
    assert saved["manifest"]["step"] == best["step"]
    assert (stage1 / "decoder" / "amazon-beauty" / "config.gin").read_text().count("train.") > 10


def test_resume_continues_exactly(stage1, capsys):
    # 20 steps, then 10 more from the checkpoint == 30 steps in one go, also with the run and tokenizer moved.
    run(tiny_run_args(stage1, 20), capsys)
    (stage1 / "decoder").rename(stage1 / "moved")
    (stage1 / "rqvae").rename(stage1 / "rqvae_moved")
    moved = ["--gin", f'train.save_dir="{stage1 / "moved"}"', "--gin", f'train.tokenizer_dir="{stage1 / "rqvae_moved"}"']
    resumed = run(tiny_run_args(stage1, 30, moved), capsys)
    straight = run(tiny_run_args(stage1, 30, [*moved, "--gin", f'train.save_dir="{stage1 / "straight"}"']), capsys)
    assert resumed["steps"] == straight["steps"] == 30
    a = torch.load(stage1 / "moved" / "amazon-beauty" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(stage1 / "straight" / "amazon-beauty" / "checkpoint.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_packed_dropout_masks_train_resume_exactly_and_are_recorded(stage1, capsys):
    # train.dropout_masks="packed": 20 steps then 10 more == 30 in one go (its masks come from the seeded,
    # checkpointed generator); other masks than torch's, so other weights than the same run with nn.Dropout.
    packed = ["--gin", 'train.dropout_masks="packed"']
    run(tiny_run_args(stage1, 20, packed), capsys)
    run(tiny_run_args(stage1, 30, packed), capsys)
    run(tiny_run_args(stage1, 30, [*packed, "--gin", f'train.save_dir="{stage1 / "straight"}"']), capsys)
    run(tiny_run_args(stage1, 30, ["--gin", f'train.save_dir="{stage1 / "torch_masks"}"']), capsys)
    resumed, straight, torch_masks = (torch.load(stage1 / name / "amazon-beauty" / "checkpoint.pt", weights_only=True)
                                      for name in ("decoder", "straight", "torch_masks"))
    assert resumed["model_kwargs"]["dropout_masks"] == "packed" and "dropout_masks" not in torch_masks["model_kwargs"]
    for k in resumed["model"]:
        torch.testing.assert_close(resumed["model"][k], straight["model"][k], rtol=0, atol=0)
    assert not all(torch.equal(resumed["model"][k], torch_masks["model"][k]) for k in resumed["model"])


def test_resume_with_another_model_is_refused(stage1, capsys):
    run(tiny_run_args(stage1, 10), capsys)
    with pytest.raises(CheckpointError, match="d_model"):
        train_decoder.main(tiny_run_args(stage1, 20, ["--gin", "train.d_model=48"]))


def test_missing_tokenizer_names_the_path(tmp_path):
    write_amazon_raw(tmp_path / "amazon", n_users=30, n_items=N_ITEMS)
    with pytest.raises(FileNotFoundError, match="semantic_ids.pt"):
        train_decoder.main(tiny_run_args(tmp_path, 10))


@pytest.mark.parametrize("config", sorted(Path("configs").glob("decoder_*.gin")), ids=lambda p: p.name)
def test_every_config_parses_and_sets_every_parameter(config):
    import inspect

    import gin

    from runtime.gin_cli import parse_gin_args

    gin.clear_config()
    parse_gin_args(train_decoder.train, [str(config)])
    assert set(gin.get_bindings(train_decoder.train)) == set(inspect.signature(train_decoder.train).parameters)
    gin.clear_config()


def test_curve_and_baselines_are_written_and_kept_across_resume(stage1, capsys):
    run(tiny_run_args(stage1, 20), capsys)
    folder = stage1 / "decoder" / "amazon-beauty"
    first = [json.loads(line) for line in (folder / "curve.jsonl").read_text().splitlines()]
    resumed = run(tiny_run_args(stage1, 30), capsys)
    curve = [json.loads(line) for line in (folder / "curve.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve] == [10, 20, 30] and curve[:2] == first  # appended, the earlier rows kept
    assert curve == resumed["valid_history"]
    for r in curve:
        assert r["examples_seen"] == 16 * r["step"] and r["train_loss"] > 0
        assert set(r) >= {"wall_seconds", "recall@10", "ndcg@10", "coverage@10", "top1_share",
                          *(f"nll_level_{t}" for t in range(4))}
        assert 0 < r["coverage@10"] <= 1 and 0 < r["top1_share"] <= 1
    assert curve[2]["wall_seconds"] >= curve[1]["wall_seconds"]  # counted across the resume
    baselines = json.loads((folder / "baselines.json").read_text())
    assert set(baselines) == {"protocol", "popularity", "transition", "plain", "history_skipped", "prior_nll"}
    assert len(baselines["prior_nll"]) == 4 and baselines["popularity"] == baselines[baselines["protocol"]]["popularity"]
    assert 0 <= baselines["transition"]["recall@10"] <= 1


def test_ema_is_the_moving_average_validated_saved_and_resumed(stage1, capsys):
    # Raw weights after steps 1, 2, 3 of a run without averaging (eval_every=1: a checkpoint per step).
    raw = []
    for steps in (1, 2, 3):
        run(tiny_run_args(stage1, steps, ["--gin", "train.eval_every=1"]), capsys)
        raw.append(torch.load(stage1 / "decoder" / "amazon-beauty" / "checkpoint.pt", weights_only=True)["model"])
    # e_1 = w_1, e_t = 0.5 e_{t-1} + 0.5 w_t
    expected = {1: raw[0], 2: {k: 0.5 * raw[0][k] + 0.5 * raw[1][k] for k in raw[0]}}
    expected[3] = {k: 0.5 * expected[2][k] + 0.5 * raw[2][k] for k in raw[0]}
    # The same run with ema_decay 0.5, stopped after step 2 and resumed to step 3.
    ema_args = ["--gin", "train.eval_every=1", "--gin", "train.ema_decay=0.5", "--gin", f'train.save_dir="{stage1 / "ema"}"']
    run(tiny_run_args(stage1, 2, ema_args), capsys)
    result = run(tiny_run_args(stage1, 3, ema_args), capsys)
    state = torch.load(stage1 / "ema" / "amazon-beauty" / "checkpoint.pt", weights_only=True)
    averaged = state["ema"]
    assert set(averaged) == set(raw[2])
    assert any(not torch.equal(averaged[k], raw[2][k]) for k in raw[2])
    for k in raw[2]:
        torch.testing.assert_close(state["model"][k], raw[2][k], rtol=0, atol=0)  # averaging never touches training
        torch.testing.assert_close(averaged[k], expected[3][k])
    # Validation reads the average: the same NLL as the raw run at step 1 (e_1 = w_1), another one at step 3.
    curves = [[json.loads(line) for line in (stage1 / d / "amazon-beauty" / "curve.jsonl").read_text().splitlines()]
              for d in ("decoder", "ema")]
    assert [r["step"] for r in curves[0]] == [r["step"] for r in curves[1]] == [1, 2, 3]
    assert curves[1][0]["nll_level_0"] == curves[0][0]["nll_level_0"]
    assert curves[1][2]["nll_level_0"] != curves[0][2]["nll_level_0"]
    best = torch.load(result["best_checkpoint"], weights_only=True)  # the average validation chose, not raw weights
    for k in raw[2]:
        torch.testing.assert_close(best["model"][k], expected[best["manifest"]["step"]][k])


def test_item_tokens_train_one_row_per_catalogue_item(stage1, capsys):
    result = run(tiny_run_args(stage1, 10, ["--gin", "train.item_tokens=True", "--gin", "train.item_token_dropout=0.5",
                                            "--gin", "train.ema_decay=0.9"]), capsys)
    best = torch.load(result["best_checkpoint"], weights_only=True)["model"]  # the moving average
    sem_ids = SemanticIdTokenizer.load(stage1 / "rqvae" / "amazon-beauty" / "semantic_ids.pt").sem_ids  # [40, 4], K = 8
    as_numbers = sem_ids @ torch.tensor([8 ** 3, 8 ** 2, 8, 1])
    assert torch.equal(best["item_emb.keys"], as_numbers.sort().values)  # the catalogue travels with the weights
    table = best["item_emb.emb.weight"]  # [41, D]: a row per item, then the padding row
    assert table.shape[0] == N_ITEMS + 1 and not table[-1].any()
    assert table[:-1].abs().sum(dim=1).gt(0).sum() > N_ITEMS // 2  # training reached the rows of its items


@pytest.mark.parametrize("all_positions", [False, True], ids=["per_example", "all_positions"])
def test_history_unlikelihood_lowers_the_previous_items_probability(stage1, capsys, all_positions):
    """The same run with and without the unlikelihood term: with it, the trained model gives the item before each
    training target (model.previous_items) a lower whole-ID probability, the one beam search ranks it by."""
    from data.batching import data_batch, window_batch
    from data.windows import TrainingWindows
    from modules.model import EncoderDecoderRetrievalModel, previous_items

    train = SeqData(str(stage1 / "amazon"), "amazon", "beauty", "train", None, str(stage1 / "cache"))
    sem_ids = SemanticIdTokenizer.load(stage1 / "rqvae" / "amazon-beauty" / "semantic_ids.pt").sem_ids
    if all_positions:
        windows = TrainingWindows(train)
        batch = window_batch(windows, torch.arange(len(windows)), sem_ids, torch.device("cpu"))
    else:
        batch = data_batch(train, torch.arange(len(train)), sem_ids, torch.device("cpu"))
    negative = previous_items(batch["history"], batch["target"])
    p_previous = {}
    for weight in (0.0, 20.0):
        save = f'train.save_dir="{stage1 / f"ul{weight}"}"'
        bindings = [save, f"train.history_unlikelihood={weight}", "train.eval_every=60", f"train.all_positions={all_positions}"]
        train_decoder.main(tiny_run_args(stage1, 60, [a for b in bindings for a in ("--gin", b)]))
        state = torch.load(stage1 / f"ul{weight}" / "amazon-beauty" / "checkpoint.pt", weights_only=True)
        model = EncoderDecoderRetrievalModel(**state["model_kwargs"])
        model.load_state_dict(state["model"])
        with torch.no_grad():
            _, logits = model.eval()(batch["user_ids"], batch["history"], batch["target"], negative)
            log_p = -model.level_nll(logits, negative).sum(-1)
        p_previous[weight] = log_p[negative[..., 0] >= 0].exp().mean().item()
    assert p_previous[20.0] < 0.85 * p_previous[0.0]  # (tiny run: 0.0059 vs 0.0076 per example)


def test_a_tokenizer_of_another_catalogue_is_refused_before_training(stage1):
    codes = torch.randint(0, 4, (N_ITEMS + 3, 3), generator=torch.Generator().manual_seed(1))
    SemanticIdTokenizer.from_codes(codes, codebook_size=8).save(stage1 / "rqvae" / "amazon-beauty" / "semantic_ids.pt")
    with pytest.raises(train_decoder.ConfigError, match=f"{N_ITEMS + 3} items but amazon/beauty has {N_ITEMS}"):
        train_decoder.main(tiny_run_args(stage1, 10))
    assert not (stage1 / "decoder" / "amazon-beauty" / "checkpoint.pt").exists()


def test_history_bias_learns_is_saved_and_evaluate_reproduces_validation(stage1, capsys):
    """A run with the learned history logit: the bias leaves zero, best.pt records it, and evaluate.py rebuilds the
    model and gets validation's numbers back (the bias applied in its beam search as in training's)."""
    bias = ["--gin", "train.history_bias=True", "--gin", "train.constrained_softmax=True"]
    result = run(tiny_run_args(stage1, 20, bias), capsys)
    state = torch.load(result["best_checkpoint"], weights_only=True)
    assert state["model_kwargs"]["history_bias"] is True
    assert state["model"]["history_bias"].abs().sum() > 0  # it learns (it starts at zero)
    valid = evaluate.main(tiny_run_args(stage1, 20, bias) + ["--split", "valid"])
    for k in evaluate.REPORTED:
        assert valid["tiger"][k] == pytest.approx(result["best_valid"][k])


@pytest.mark.parametrize("other", ["train.all_positions=True", "train.history_unlikelihood=1.0"])
def test_history_bias_refuses_what_it_does_not_combine_with(stage1, other):
    with pytest.raises(train_decoder.ConfigError, match="history_bias"):
        train_decoder.main(tiny_run_args(stage1, 10, ["--gin", "train.history_bias=True", "--gin", other]))
    assert not (stage1 / "decoder").exists()


def test_history_bias_with_a_stop_gradient_trains_the_recipes_model_to_the_bit(stage1):
    """train.history_bias_stop_gradient: the same seed trains the same weights as a run without the logit (the
    logit's gradient is kept out of the model's and out of the clipped norm), and the logit still learns."""
    states = {}
    for name, extra in (("plain", []), ("detached", ["train.history_bias=True", "train.history_bias_stop_gradient=True"])):
        bindings = [f'train.save_dir="{stage1 / name}"', "train.constrained_softmax=True", "train.grad_clip=0.01", *extra]
        train_decoder.main(tiny_run_args(stage1, 12, [a for b in bindings for a in ("--gin", b)]))
        states[name] = torch.load(stage1 / name / "amazon-beauty" / "checkpoint.pt", weights_only=True)
    plain, detached = states["plain"]["model"], states["detached"]["model"]
    assert detached["history_bias"].abs().sum() > 0  # it learns (it starts at zero)
    assert states["detached"]["model_kwargs"]["history_bias_stop_gradient"] is True
    assert set(detached) == set(plain) | {"history_bias"}
    assert all(torch.equal(detached[k], plain[k]) for k in plain)


def test_a_stop_gradient_without_the_history_logit_is_refused(stage1):
    with pytest.raises(train_decoder.ConfigError, match="history_bias_stop_gradient = True needs train.history_bias"):
        train_decoder.main(tiny_run_args(stage1, 10, ["--gin", "train.history_bias_stop_gradient=True"]))
    assert not (stage1 / "decoder").exists()


def test_successor_token_trains_is_saved_and_evaluate_reproduces_validation(stage1, capsys):
    """With item tokens and the successor token: the second table travels with the weights (its rows the item
    table's), training reaches its rows, and evaluate.py rebuilds the model and gets validation's numbers back."""
    on = ["--gin", "train.item_tokens=True", "--gin", "train.successor_token=True", "--gin", "train.item_token_dropout=0.5"]
    result = run(tiny_run_args(stage1, 20, on), capsys)
    state = torch.load(result["best_checkpoint"], weights_only=True)
    assert state["model_kwargs"]["successor_token"] is True
    assert "successor_emb.keys" not in state["model"]  # its rows are the item table's: the catalogue travels once
    table = state["model"]["successor_emb.weight"]  # [41, D]
    assert not table[-1].any() and table[:-1].abs().sum(dim=1).gt(0).sum() > 5  # it starts at zero and learns
    valid = evaluate.main(tiny_run_args(stage1, 20, on) + ["--split", "valid"])
    for k in evaluate.REPORTED:
        assert valid["tiger"][k] == pytest.approx(result["best_valid"][k])
