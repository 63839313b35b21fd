import json

from bench.results_file import write_json


def test_write_json_writes_the_rows_and_nothing_without_a_path(tmp_path):
    path = tmp_path / "rows.json"
    write_json(str(path), [{"batch": 256, "s_per_step": 0.37}])
    assert json.loads(path.read_text()) == [{"batch": 256, "s_per_step": 0.37}]
    assert path.read_text().endswith("\n")
    write_json(None, [{"batch": 1}])  # --json not given
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.json"]
