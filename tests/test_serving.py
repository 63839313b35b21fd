"""serving/ and recommend.py: answers in the data set's own ids equal evaluate.py's beam search, an exported
model folder answers the same anywhere without the data, and a damaged or foreign folder, an unknown id or a
bad request is one clear line. One tiny run on the fixture data serves every test of the module."""
import json
import shutil
import sys

import pytest
import torch

import evaluate
import recommend
import train_decoder
from data.processed import SeqData
from evaluation.retrieval import recommend as evaluation_recommend
from modules.embedding.user_id_embedder import UserIdEmbedder
from modules.tokenizer import SemanticIdTokenizer
from runtime.errors import CheckpointError, ConfigError, MissingFileError, RequestError
from serving import Recommender, load_recommender
from serving.model_folder import FILES, FORMAT_VERSION
from tests.fixtures import write_amazon_raw
from tests.test_train_decoder import N_ITEMS, tiny_run_args

ASIN = lambda item: f"B{item + 1:09d}"      # the fixture's own ids: internal id = P5 id - 1 (data/amazon.py)
REVIEWER = lambda user: f"U{user + 1:08d}"
SKIP = ["--gin", "train.eval_exclude_history=True", "--gin", "train.eval_transition_prior=2.0"]  # and the prior


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained decoder run (selected on the history-skipped protocol, searched with the transition prior)
    and evaluate.py's test lists."""
    root = tmp_path_factory.mktemp("serving")
    write_amazon_raw(root / "amazon", n_users=30, n_items=N_ITEMS)
    codes = torch.randint(0, 4, (N_ITEMS, 3), generator=torch.Generator().manual_seed(0))
    SemanticIdTokenizer.from_codes(codes, codebook_size=8).save(root / "rqvae" / "amazon-beauty" / "semantic_ids.pt")
    torch.manual_seed(0)
    train_decoder.main(tiny_run_args(root, 20, SKIP))
    topk = root / "topk.jsonl"
    evaluate.main(tiny_run_args(root, 20, [*SKIP, "--split", "test", "--write-topk", str(topk)]))
    records = [json.loads(line) for line in topk.read_text().splitlines()]
    return root, records


def run_folder(root):
    return root / "decoder" / "amazon-beauty"


def same(a, b) -> bool:
    """Two answers alike: the same items and titles in the same order, scores equal up to float rounding (a
    batch of other shapes may sum in another order)."""
    return ([(r.item_id, r.title) for r in a] == [(r.item_id, r.title) for r in b]
            and [r.score for r in a] == pytest.approx([r.score for r in b], abs=1e-5))


def test_recommend_equals_evaluate_for_every_test_user_under_both_protocols(run):
    root, records = run
    rec = load_recommender(run_folder(root), device="cpu")
    assert rec.protocol == "history_skipped" and rec.item_ids[:2] == ["B000000001", "B000000002"]
    histories = [[ASIN(h["item_id"]) for h in r["history"]] for r in records]
    users = [REVIEWER(r["user_id"]) for r in records]
    answers = rec.recommend(histories, 10, user=users)  # the run's protocol: history_skipped
    for r, answer in zip(records, answers):
        assert [a.item_id for a in answer] == [ASIN(x["item_id"]) for x in r["recommendations"]]
        assert [a.title for a in answer] == [x["title"] for x in r["recommendations"]]
        assert [a.score for a in answer] == pytest.approx([x["score"] for x in r["recommendations"]], abs=1e-4)
    # one user alone: the same list; fewer items: its beginning (the beam is never narrower than the run's)
    assert same(rec.recommend(histories[3], 10, user=users[3]), answers[3])
    assert same(rec.recommend(histories[3], 4, user=users[3]), answers[3][:4])

    # plain: evaluate.py's beam search (evaluation/retrieval.py) without the filter
    test = SeqData(str(root / "amazon"), "amazon", "beauty", "test", cache_dir=str(root / "cache"))
    found = evaluation_recommend(rec.model, test, rec.sem_ids, rec.trie, 10, 10, 8, rec.device, exclude_history=False,
                                 successors=rec.successors, prior_weight=2.0)
    plain = rec.recommend([[ASIN(i) for i in h[h >= 0].tolist()] for h in test.histories], 10, protocol="plain",
                          user=[REVIEWER(u) for u in test.user_ids.tolist()])
    assert [[a.item_id for a in answer] for answer in plain] == [[ASIN(i) for i in row] for row in found["item_ids"].tolist()]
    for answer, scores in zip(plain, found["scores"].tolist()):
        assert [a.score for a in answer] == pytest.approx(scores, abs=1e-5)
    assert any(a.item_id in h for answer, h in zip(plain, histories) for a in answer)  # plain may return the history
    # the prior is part of the answer: the model alone answers otherwise
    assert rec.prior_weight == 2.0 and rec.successors is not None
    rec.prior_weight = 0.0
    alone = rec.recommend(histories, 10, user=users)
    assert any([a.item_id for a in x] != [a.item_id for a in y] for x, y in zip(alone, answers))


def test_a_history_without_a_user_reads_the_history_alone(run):
    root, _ = run
    rec = load_recommender(run_folder(root), device="cpu")
    history = [ASIN(5), ASIN(17), ASIN(2)]
    alone = rec.recommend(history, 10)
    assert len(alone) == 10 and not {a.item_id for a in alone} & set(history)
    assert [a.score for a in alone] == sorted((a.score for a in alone), reverse=True)
    user = rec.recommend(history, 10, user=REVIEWER(0))
    with torch.no_grad():  # another user token table: the user's answer moves, the user-less one does not
        rec.model.user_emb.emb.weight.mul_(-3.0)
    assert rec.recommend(history, 10) == alone
    assert [a.score for a in rec.recommend(history, 10, user=REVIEWER(0))] != [a.score for a in user]


def test_with_one_user_token_for_all_a_history_reads_it_with_or_without_a_user(run):
    root, _ = run
    rec = load_recommender(run_folder(root), device="cpu")
    rec.model.user_emb = UserIdEmbedder(1, rec.model.user_emb.emb.embedding_dim)  # as trained with train.n_user_buckets = 1
    history = [ASIN(5), ASIN(17), ASIN(2)]
    alone = rec.recommend(history, 10)
    assert same(alone, rec.recommend(history, 10, user=REVIEWER(0))) and same(alone, rec.recommend(history, 10, user=REVIEWER(7)))
    with torch.no_grad():  # the shared token is read (not masked): changing it moves the user-less answer
        rec.model.user_emb.emb.weight.mul_(-3.0)
    assert [a.score for a in rec.recommend(history, 10)] != [a.score for a in alone]


def command_line(monkeypatch, *args: str) -> int:
    """recommend.py as run from a shell: its exit status (a UserError: one line on stderr, status 2)."""
    monkeypatch.setattr(sys, "argv", ["recommend.py", *args])
    with pytest.raises(SystemExit) as exit_info:
        recommend.main()
    return exit_info.value.code


def test_unknown_ids_and_bad_requests_are_one_clear_line(run, capsys, monkeypatch):
    root, _ = run
    rec = load_recommender(run_folder(root), device="cpu")
    with pytest.raises(RequestError, match=r"unknown item ids 'nope', 'B999999999': not in the catalogue of amazon/beauty"):
        rec.recommend([ASIN(1), "nope", "B999999999", "nope"])
    with pytest.raises(RequestError, match=r"unknown item id '7'"):
        rec.recommend([7])  # an int is the id's text: Amazon's ids are ASINs
    with pytest.raises(RequestError, match="unknown user id 'U99'"):
        rec.recommend([ASIN(1)], user="U99")
    with pytest.raises(RequestError, match="history 0 is empty"):
        rec.recommend([])
    with pytest.raises(RequestError, match="protocol 'skip'"):
        rec.recommend([ASIN(1)], protocol="skip")
    with pytest.raises(RequestError, match="k = 41"):
        rec.recommend([ASIN(1)], 41)
    with pytest.raises(RequestError, match="not one string|list of item ids"):
        rec.recommend(ASIN(1))
    assert command_line(monkeypatch, str(run_folder(root)), "--history", f"{ASIN(1)},zzz") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: unknown item id 'zzz': not in the catalogue of amazon/beauty (40 items)"]


def test_exported_folder_moved_elsewhere_answers_the_same_without_data_or_runs(run, tmp_path):
    root, _ = run
    rec = load_recommender(run_folder(root), device="cpu")
    history, users = [[ASIN(3), ASIN(9)], [ASIN(30)]], [REVIEWER(4), None]
    expected = {p: rec.recommend(history, 10, protocol=p, user=users) for p in ("plain", "history_skipped")}
    out = recommend.main([str(run_folder(root)), "--export", str(tmp_path / "model"), "--json"])
    assert out["export"] == str(tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION and set(manifest["files"]) == set(FILES)
    assert manifest["versions"]["torch"] == torch.__version__ and manifest["settings"]["protocol"] == "history_skipped"
    (tmp_path / "model").rename(tmp_path / "moved")
    hidden = tmp_path / "hidden"  # the data, its cache and both runs out of reach
    hidden.mkdir()
    for name in ("amazon", "cache", "rqvae", "decoder"):
        shutil.move(str(root / name), str(hidden / name))
    try:
        served = load_recommender(tmp_path / "moved", device="cpu")
        for protocol, answer in expected.items():
            assert served.recommend(history, 10, protocol=protocol, user=users) == answer
        with pytest.raises(RequestError, match="a model folder holds no user histories"):
            served.user_history(REVIEWER(0))
        with pytest.raises(ConfigError, match="already exists and is not empty"):
            served.export(tmp_path / "moved")
    finally:
        for name in ("amazon", "cache", "rqvae", "decoder"):
            shutil.move(str(hidden / name), str(root / name))


def test_a_changed_damaged_or_foreign_folder_is_refused(run, tmp_path, capsys, monkeypatch):
    root, _ = run
    folder = load_recommender(run_folder(root), device="cpu").export(tmp_path / "model")
    Recommender.from_folder(folder)  # as written: fine
    for name, edit in (("weights.pt", lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:]),
                       ("catalogue.json", lambda b: b.replace(b"product", b"Product", 1))):
        copy = shutil.copytree(folder, tmp_path / f"edited-{name}")
        (copy / name).write_bytes(edit((copy / name).read_bytes()))
        with pytest.raises(CheckpointError, match=f"{name} does not match the SHA-256"):
            load_recommender(copy)
    newer = shutil.copytree(folder, tmp_path / "newer")
    manifest = json.loads((newer / "manifest.json").read_text())
    (newer / "manifest.json").write_text(json.dumps({**manifest, "format_version": FORMAT_VERSION + 1}))
    assert command_line(monkeypatch, str(newer), "--history", ASIN(1)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"format version {FORMAT_VERSION + 1}; this code reads version {FORMAT_VERSION}" in err[0]
    (newer / "weights.pt").unlink()
    with pytest.raises(MissingFileError, match="no best.pt"):
        load_recommender(tmp_path)  # neither a model folder nor a run


def test_command_line_by_own_user_id_and_by_history(run, capsys):
    root, records = run
    record = next(r for r in records if r["user_id"] == 4)
    args = [str(run_folder(root)), "--user", REVIEWER(4), "--split", "test", "--json"]
    out = recommend.main(args)
    assert json.loads(capsys.readouterr().out.strip()) == json.loads(json.dumps(out))
    assert [h["item_id"] for h in out["history"]] == [ASIN(h["item_id"]) for h in record["history"]]
    assert out["held_out"] == {"item_id": ASIN(record["target"]["item_id"]), "title": record["target"]["title"]}
    assert [r["item_id"] for r in out["recommendations"]] == [ASIN(x["item_id"]) for x in record["recommendations"]]

    everything = recommend.main([str(run_folder(root)), "--user", REVIEWER(4), "-k", "3", "--protocol", "plain"])
    table = capsys.readouterr().out
    assert everything["held_out"] is None and len(everything["recommendations"]) == 3
    assert [h["item_id"] for h in everything["history"]][-2:] == [out["history"][-1]["item_id"], out["held_out"]["item_id"]]
    for it in everything["recommendations"]:
        assert it["item_id"] in table and it["title"] in table
    given = recommend.main([str(run_folder(root)), "--history", f"{ASIN(3)}, {ASIN(9)}", "-k", "5"])
    table = capsys.readouterr().out
    assert [h["item_id"] for h in given["history"]] == [ASIN(3), ASIN(9)] and given["user"] is None
    assert "recommendations" in table and given["recommendations"][0]["title"] in table
    with pytest.raises(ConfigError, match="nothing to do"):
        recommend.main([str(run_folder(root))])


@pytest.mark.parametrize("foreign", ["rerun_stage1", "other_catalogue"])
def test_a_run_read_with_foreign_semantic_ids_is_refused_in_one_line(run, tmp_path, foreign):
    """evaluate.py and load_recommender refuse, before any beam search, best.pt read with semantic IDs it was
    not trained with: stage 1 rerun since (same items, other codes: the recorded SHA-256 differs) or stage 1
    of another data set (another item count)."""
    root, _ = run
    n_items = N_ITEMS if foreign == "rerun_stage1" else N_ITEMS + 5
    codes = torch.randint(0, 4, (n_items, 3), generator=torch.Generator().manual_seed(1))
    other = tmp_path / "rqvae"
    SemanticIdTokenizer.from_codes(codes, codebook_size=8).save(other / "amazon-beauty" / "semantic_ids.pt")
    expected = (CheckpointError, "trained with other semantic IDs") if foreign == "rerun_stage1" else \
        (ConfigError, f"holds semantic IDs for {N_ITEMS + 5} items but amazon/beauty has {N_ITEMS}")
    with pytest.raises(expected[0], match=expected[1]):
        evaluate.main(tiny_run_args(root, 20, [*SKIP, "--gin", f'train.tokenizer_dir="{other}"']))
    with pytest.raises(expected[0], match=expected[1]):
        load_recommender(run_folder(root), device="cpu", tokenizer_dir=str(other))
    load_recommender(run_folder(root), device="cpu")  # its own stage 1 still loads
