"""studies/best_snapshots.sh: best.pt as it stood at each validation, against a stand-in run folder."""
import json
import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def write_step(run: Path, step: int, best: str) -> None:
    """What train_decoder.py leaves after a validation: best.pt (+ best.json), then checkpoint.json naming the step."""
    (run / "best.pt").write_text(best)
    (run / "best.json").write_text(json.dumps({"step": step}))
    (run / "checkpoint.json").write_text(json.dumps({"step": step}))


def wait_for(path: Path, seconds: float = 20.0) -> None:
    deadline = time.time() + seconds
    while not path.exists() and time.time() < deadline:
        time.sleep(0.05)


def test_copies_best_pt_at_every_checkpoint_step_and_stops_at_the_last(tmp_path):
    run = tmp_path / "amazon-sports"
    run.mkdir()
    (run / "config.gin").write_text("train.iterations = 4000\ntrain.seed = 42\n")
    write_step(run, 2000, "best of 2000")
    watcher = subprocess.Popen(["bash", "studies/best_snapshots.sh", str(run)], cwd=REPO,
                               env={**os.environ, "POLL_SECONDS": "0.1"})
    wait_for(run / "best_at" / "2000" / "config.gin")
    write_step(run, 4000, "best of 4000")
    assert watcher.wait(timeout=20) == 0  # the run's last step is copied: it stops by itself
    assert (run / "best_at" / "2000" / "best.pt").read_text() == "best of 2000"  # not overwritten by a later best
    assert (run / "best_at" / "4000" / "best.pt").read_text() == "best of 4000"
    assert json.loads((run / "best_at" / "2000" / "best.json").read_text()) == {"step": 2000}
    assert sorted(p.name for p in (run / "best_at").iterdir()) == ["2000", "4000"]
