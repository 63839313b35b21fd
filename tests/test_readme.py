"""The README's claims against the files they come from: the reading order's files and sizes, the
deviations table's bindings and evidence, and the headline numbers against the committed JSON results."""
import inspect
import json
import re
import statistics
from pathlib import Path

import pytest

import train_decoder
import train_rqvae

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:end if end >= 0 else None]


def table_rows(text: str) -> list[list[str]]:
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and not line.startswith("|---")]
    return rows[1:]  # without the header


def test_reading_order_names_real_files_with_their_sizes():
    rows = [r for r in table_rows(section("Reading the code")) if len(r) == 3 and r[1].isdigit()]
    assert len(rows) >= 10
    total = 0
    for name, lines, _ in rows:
        path = REPO / name.strip("`")
        assert path.is_file(), name
        actual = len(path.read_text().splitlines())
        assert abs(actual - int(lines)) <= max(10, 0.1 * actual), f"{name}: README says {lines} lines, it has {actual}"
        total += actual
    claimed = re.search(r"in reading order \((\d+) files, about ([\d,]+) lines\)", README)
    assert int(claimed.group(1)) == len(rows)
    assert abs(int(claimed.group(2).replace(",", "")) - total) <= 0.1 * total


def test_deviation_table_names_real_bindings_and_evidence():
    text = section("Deviations from the paper")
    parameters = set(inspect.signature(train_rqvae.train).parameters) | set(inspect.signature(train_decoder.train).parameters)
    bindings = set(re.findall(r"`train\.(\w+)`", text))
    assert len(bindings) >= 10 and bindings <= parameters, bindings - parameters
    for path in re.findall(r"`((?:studies|bench)/results/[\w.]+)`", text):
        assert (REPO / path).is_file(), path
    for config in re.findall(r"`((?:rqvae|decoder)_\w+)`", text):
        assert (REPO / "configs" / f"{config}.gin").is_file(), config


def test_headline_h200_row_is_the_mean_of_the_committed_seeds():
    runs = []
    for name in ("time_to_quality_beauty_h200.json", "time_to_quality_beauty_h200_seeds_43_44.json"):
        runs += json.loads((REPO / "studies" / "results" / name).read_text())["runs"]
    assert sorted(r["seed"] for r in runs) == [42, 43, 44]
    row = next(r for r in table_rows(README[:README.index("## Install")]) if "H200" in r[0])
    assert row[3] == f"{statistics.mean(r['test']['recall@10'] for r in runs):.4f}"
    assert row[4] == f"{statistics.mean(r['test']['ndcg@10'] for r in runs):.4f}"


def test_headline_floors_are_evaluate_py_output():
    result = json.loads((REPO / "bench" / "results" / "restructure_equivalence.json").read_text())["evaluate_after"]
    rows = table_rows(README[:README.index("## Install")])
    for label, name in (("most frequent next item", "transition"), ("most popular", "popularity")):
        row = next(r for r in rows if label in r[0])
        assert row[1:5] == [f"{result[p][name][m]:.4f}" for p in ("plain", "history_skipped") for m in ("recall@10", "ndcg@10")]


def sasrec_seed_means(split: str, loss: str) -> tuple[list[dict], list[int], list[str]]:
    """The committed SASRec test rows of one split and loss, their seeds, and the headline's four cells (plain and
    history-skipped Recall@10, NDCG@10) as the mean over those seeds."""
    rows = json.loads((REPO / "studies" / "results" / "sasrec_amazon.json").read_text())["rows"]
    runs = [r for r in rows if r["split"] == split and r["model"] == "sasrec" and r["loss"] == loss]
    seeds = sorted({r["seed"] for r in runs})
    mean = lambda p, m: statistics.mean(r[m] for r in runs if r["protocol"] == p)
    return runs, seeds, [f"{mean(p, m):.4f}" for p in ("plain", "history_skipped") for m in ("recall@10", "ndcg@10")]


def test_headline_sasrec_rows_are_the_committed_runs():
    table = table_rows(README[:README.index("## Install")])
    for label, loss in (("SASRec here, full-softmax", "ce"), ("SASRec here, the paper's BCE", "bce")):
        row = next(r for r in table if r[0].startswith(label))
        runs, seeds, cells = sasrec_seed_means("beauty", loss)
        assert f"mean of seeds {seeds[0]}-{seeds[-1]}" in row[0] and seeds == list(range(seeds[0], seeds[-1] + 1))
        assert row[1:5] == cells
        minutes = [r["wall_seconds"] / 60 for r in runs if r["protocol"] == "plain"]
        assert row[5].startswith(f"{round(min(minutes))}-{round(max(minutes))} min")


def test_headline_laptop_wall_time_is_the_committed_timing():
    timed = json.loads((REPO / "studies" / "results" / "laptop_recipe_timed_beauty_cpu.json").read_text())
    run = timed["runs"][0]
    row = next(r for r in table_rows(README[:README.index("## Install")]) if "`*_cpu.gin` (one user token" in r[0])
    assert row[5].startswith(f"{round(timed['mean']['total_s'] / 60)} min from the raw files, alone")
    assert f"stage 1 {run['stage1_s'] / 60:.1f} min, stage 2 {run['stage2_s'] / 60:.1f} min" in row[5]
    assert timed["device"] == "cpu" and not timed["features"]["embeddings_cached"]  # raw files: the embedding timed too


@pytest.mark.parametrize("label, result, recipe", [
    ("`*_cpu.gin` (one user token, 30 beams", "one_user_token_beauty_sports.json", "+ one user token (n_user_buckets = 1)"),
    ("the paper's 2,000 hashed user tokens (30 beams", "laptop_recipe_beam30.json", None),
    ("at the paper's 10 beams", "laptop_recipe_identity.json", None)])
def test_headline_laptop_rows_are_the_mean_of_the_committed_runs(label, result, recipe):
    report = json.loads((REPO / "studies" / "results" / result).read_text())
    beauty = next(r for r in report["summary"] if r["split"] == "beauty" and recipe in (None, r["recipe"]))
    seeds = ", ".join(str(s) for s in beauty["seeds"])
    row = next(r for r in table_rows(README[:README.index("## Install")]) if label in r[0])
    assert f"seeds {seeds})" in row[0]
    assert [c.strip("*") for c in row[1:5]] == [f"{beauty[p]['tiger'][m]['mean']:.4f}"
                                              for p in ("plain", "history_skipped") for m in ("recall@10", "ndcg@10")]


def test_headline_sports_table_is_the_committed_runs():
    """The Sports table: TIGER's recipe row, SASRec's two losses and both floors against their committed JSON."""
    start = README.index("| Sports |")
    rows = table_rows(README[start:README.index("\n\n", start)])
    cells = lambda label: next(r for r in rows if label in r[0])[1:5]
    four = lambda get: [f"{get(p, m):.4f}" for p in ("plain", "history_skipped") for m in ("recall@10", "ndcg@10")]
    report = json.loads((REPO / "studies" / "results" / "one_user_token_beauty_sports.json").read_text())
    tiger = next(r for r in report["summary"] if r["split"] == "sports" and r["recipe"].startswith("+ one user token"))
    assert tiger["seeds"] == [42, 43, 44] and "mean of seeds 42, 43, 44" in next(r for r in rows if "(one user token" in r[0])[0]
    assert [c.strip("*") for c in cells("`*_cpu.gin` (one user token")] == four(lambda p, m: tiger[p]["tiger"][m]["mean"])
    for label, name in (("most frequent next item", "transition"), ("most popular", "popularity")):
        assert cells(label) == four(lambda p, m: tiger[p][name][m]["mean"])
    for label, loss in (("SASRec here, full-softmax", "ce"), ("SASRec here, the paper's BCE", "bce")):
        _, seeds, means = sasrec_seed_means("sports", loss)
        assert seeds == [42, 43, 44] and cells(label) == means


@pytest.mark.parametrize("split, header", [("beauty", "## Install"), ("sports", None)])
def test_headline_transition_prior_rows_are_the_committed_test(split, header):
    """The recipe's rows (search with the transition prior) and its runs' model-alone rows, in both tables."""
    report = json.loads((REPO / "studies" / "results" / "transition_prior_beauty_sports.json").read_text())
    assert report["decision"]["recipe"]["adopted"] and report["decision"]["recipe"]["chosen_weight"] == 3.0
    if header:
        rows = table_rows(README[:README.index(header)])
    else:
        start = README.index("| Sports |")
        rows = table_rows(README[start:README.index("\n\n", start)])
    for label, weight in (("`train.eval_transition_prior = 3`", "3"), ("the same runs, the model alone (W = 0", "0")):
        row = next(r for r in rows if label in r[0])
        test = report["test"][f"recipe_{split}_w{weight}"]
        assert sorted(int(s) for s in test["seeds"]) == [42, 43, 44] and "mean of seeds 42, 43, 44" in (
            row[0] if weight == "3" else next(r for r in rows if "`train.eval_transition_prior = 3`" in r[0])[0])
        assert [c.strip("*") for c in row[1:5]] == [f"{test['tiger'][p][m]['mean']:.4f}"
                                                  for p in ("plain", "history_skipped") for m in ("recall@10", "ndcg@10")]


def test_all_positions_amazon_speed_is_the_committed_bench():
    bench = json.loads((REPO / "bench" / "results" / "all_positions_amazon_cpu.json").read_text())
    rate = {(r["split"], r["all_positions"]): r["examples_per_second"] for r in bench["rows"] if r["threads"] == 2}
    ratios = [rate[split, True] / rate[split, False] for split in ("beauty", "sports")]
    assert f"it trains {ratios[0]:.2f}x (Beauty) and {ratios[1]:.2f}x (Sports) the targets per second" in README
    step = {(r["split"], r["all_positions"]): r["seconds_per_step"] for r in bench["rows"] if r["threads"] == 2}
    steps = [16_000 * step[split, False] / (3 * step[split, True]) for split in ("beauty", "sports")]
    assert all(round(n / 1000) == 14 for n in steps) and "training time it trains ~14k steps" in README


def test_laptop_wall_time_on_the_amd_machine_is_the_committed_timing():
    timed = json.loads((REPO / "studies" / "results" / "laptop_recipe_timed_beauty_cpu_amd.json").read_text())
    run = timed["runs"][0]
    assert "AMD EPYC" in timed["device_name"] and not timed["features"]["embeddings_cached"]
    assert (f"on an AMD EPYC machine the same command took {timed['mean']['total_s'] / 60:.1f} min (stage 1 "
            f"{run['stage1_s'] / 60:.1f} min, stage 2 {run['stage2_s'] / 60:.1f} min" in README)


def test_packed_dropout_speed_is_the_committed_bench():
    bench = json.loads((REPO / "bench" / "results" / "packed_dropout_amazon_cpu.json").read_text())
    rate = {(r["split"], r["dropout_masks"]): r["examples_per_second"] for r in bench["rows"]}
    ratios = [rate[split, "packed"] / rate[split, "torch"] for split in ("beauty", "sports")]
    assert f"then trains {ratios[0]:.2f}x (Beauty) and {ratios[1]:.2f}x (Sports) the examples per second" in README


def test_laptop_wall_time_with_packed_dropout_is_the_committed_timing():
    timed = json.loads((REPO / "studies" / "results" / "laptop_recipe_packed_dropout_beauty_cpu.json").read_text())
    run = timed["runs"][0]
    assert timed["gin"] == ['(stage 2) train.dropout_masks="packed"'] and "Intel" in timed["device_name"]
    assert not timed["features"]["embeddings_cached"]  # timed from the raw files
    assert (f"an Intel Xeon ran it in {timed['mean']['total_s'] / 60:.1f} min on another day (stage 1 "
            f"{run['stage1_s'] / 60:.1f} min, stage 2 {run['stage2_s'] / 60:.1f} min; one seed, test plain NDCG@10 "
            f"{run['test_by_protocol']['plain']['ndcg@10']:.4f}" in README)
