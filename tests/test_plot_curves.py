import json

import pytest

from studies.plot_curves import main, read_curve


def write_run(folder, values):
    folder.mkdir(parents=True)
    rows = [{"step": 10 * (i + 1), "examples_seen": 160 * (i + 1), "wall_seconds": 1.5 * (i + 1), "train_loss": 5 - v,
             "ndcg@10": v / 10, "recall@10": v / 5, "nll_level_0": 5.5 - v, "coverage@10": v / 3, "top1_share": 1 - v / 4}
            for i, v in enumerate(values)]
    (folder / "curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "baselines.json").write_text(json.dumps({"popularity": {"ndcg@10": 0.01}, "transition": {"ndcg@10": 0.05},
                                                       "prior_nll": [5.4, 2.0, 1.0, 0.1]}))
    return folder


def test_plots_several_runs_into_one_png(tmp_path):
    a = write_run(tmp_path / "lr1" / "amazon-beauty", [0.1, 0.3, 0.5])
    b = write_run(tmp_path / "lr2" / "amazon-beauty", [0.2, 0.2])
    out = tmp_path / "curves.png"
    main([str(a), str(b), "--out", str(out), "--x", "wall_seconds"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert [r["step"] for r in read_curve(a)] == [10, 20, 30]


def test_a_folder_without_a_curve_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="curve.jsonl"):
        main([str(tmp_path), "--out", str(tmp_path / "x.png")])


def test_curve_table_row_reads_the_best_and_the_last_validation(tmp_path, capsys):
    from studies.curve_table import main as table

    run = write_run(tmp_path / "lr1" / "amazon-beauty", [0.1, 0.5, 0.3])
    table([str(run)])
    row = capsys.readouterr().out.strip().splitlines()[-1]
    # best NDCG@10 0.05 at step 20 (Recall@10 0.1 there), last 0.03 at step 30, first-code NLL 5.0 vs prior 5.4
    assert row.startswith("| lr1 | 0.0500 (20) | 0.1000 | 0.0300 (30) | 5.00 / 5.40 | 0.167 | 0.875 | 0.1 / 0.1 |")


def test_curve_table_reads_the_asked_protocol_and_compares_runs_step_by_step(tmp_path, capsys):
    from studies.curve_table import main as table

    a = write_run(tmp_path / "base" / "amazon-beauty", [0.1, 0.5, 0.3])
    b = write_run(tmp_path / "arm" / "amazon-beauty", [0.2, 0.4])  # stopped after two validations
    for run, plain in ((a, [0.4, 0.2, 0.1]), (b, [0.1, 0.3])):  # the plain ranking's NDCG@10 per step
        rows = [json.loads(line) for line in (run / "curve.jsonl").read_text().splitlines()]
        for row, v in zip(rows, plain):
            row["plain"] = {"ndcg@10": v / 10, "recall@10": v / 5, "coverage@10": 0.5, "top1_share": 0.5}
        (run / "curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table([str(a), str(b), "--protocol", "plain", "--by-step"])
    out = capsys.readouterr().out.strip().splitlines()
    # on the plain ranking the base run is best at its first step (0.04), the arm at its second (0.03)
    assert out[2].startswith("| base | 0.0400 (10) | 0.0800 | 0.0100 (30) | 5.40 / 5.40 |")
    assert out[3].startswith("| arm | 0.0300 (20) | 0.0600 | 0.0300 (20) | 5.10 / 5.40 |")
    assert out[-3:] == ["| 10 | 0.0400 / 5.40 | 0.0100 / 5.30 |", "| 20 | 0.0200 / 5.00 | 0.0300 / 5.10 |",
                        "| 30 | 0.0100 / 5.20 |  |"]
    with pytest.raises(SystemExit, match="no history_skipped metrics"):
        table([str(a), "--protocol", "history_skipped"])


def test_curve_table_times_each_run_to_the_first_runs_best(tmp_path, capsys):
    from studies.curve_table import main as table

    base = write_run(tmp_path / "base" / "amazon-beauty", [0.1, 0.3, 0.4, 0.35])  # best 0.04; last wall 6.0 s
    fast = write_run(tmp_path / "fast" / "amazon-beauty", [0.2, 0.45, 0.3])       # reaches 0.04 at step 20 (3.0 s)
    low = write_run(tmp_path / "low" / "amazon-beauty", [0.2, 0.39])               # never does
    table([str(base), str(fast), str(low), "--reach-first", "--json", str(tmp_path / "curves.json")])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-7] == "target: base's best NDCG@10 0.0400; its wall seconds at its last validation 6.0"
    assert out[-3:] == ["| base | 30 | 0.0400 | 4.5 | 0.75 |", "| fast | 20 | 0.0450 | 3.0 | 0.50 |",
                        "| low | not reached (best 0.0390) |  |  |  |"]
    curves = json.loads((tmp_path / "curves.json").read_text())
    assert list(curves) == ["base", "fast", "low"] and [r["step"] for r in curves["low"]] == [10, 20]


def test_curve_table_averages_each_arms_seeds_and_times_the_means(tmp_path, capsys):
    from studies.curve_table import main as table

    runs = [write_run(tmp_path / name / "amazon-beauty", values) for name, values in (
        ("base1", [0.1, 0.3, 0.4]), ("base2", [0.3, 0.5, 0.2]),  # mean NDCG@10 0.02, 0.04, 0.03: best 0.04 at step 20
        ("arm1", [0.2, 0.4]), ("arm2", [0.4, 0.5, 0.6]))]        # steps both reached: 10, 20; means 0.03, 0.045
    table([str(run) for run in runs] + ["--seeds", "2", "--arm", "base", "--arm", "arm"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-12:-7] == ["| step | base | arm |", "|---:|---:|---:|",
                           "| 10 | 0.0200 (0.0141), 0.0400 (2 s) | 0.0300 (0.0141), 0.0600 (2 s) |",
                           "| 20 | 0.0400 (0.0141), 0.0800 (3 s) | 0.0450 (0.0071), 0.0900 (3 s) |",
                           "| 30 | 0.0300 (0.0141), 0.0600 (4 s) |  |"]
    assert out[-6] == "target: base's best mean NDCG@10 0.0400; its mean wall seconds at its last validation 4.5"
    assert out[-2:] == ["| base | 20 | 0.0400 | 3.0 | 0.67 |", "| arm | 20 | 0.0450 | 3.0 | 0.67 |"]
    with pytest.raises(SystemExit, match="one --arm per arm"):
        table([str(run) for run in runs] + ["--seeds", "2", "--arm", "base"])
