"""studies/recipe_arm.sh: the commands it runs (a stand-in python records them) and its refusals."""
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def drive(tmp_path, script, *args, seed="42", **env):
    """Run a study driver with a stand-in python that records its command lines -> (process, sorted calls)."""
    fake = tmp_path / "python"
    fake.write_text('#!/usr/bin/env bash\necho "$@" >> "$CALLS"\n')
    fake.chmod(0o755)
    (tmp_path / "seeds" / f"s{seed}" / "rqvae").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHON": str(fake), "CALLS": str(tmp_path / "calls"), "SEEDS_OUT": str(tmp_path / "seeds"),
           "OUT": str(tmp_path / "out"), "TEST": "0", **env}
    done = subprocess.run(["bash", script, *args], cwd=REPO, env=env, capture_output=True, text=True)
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    return done, sorted(calls)


def arm(tmp_path, *args, test=False):
    return drive(tmp_path, "studies/recipe_arm.sh", *args, TEST="1" if test else "0")


def test_trains_both_categories_with_the_recipe_plus_the_arms_bindings(tmp_path):
    done, calls = arm(tmp_path, "succ", "42", "train.successor_token=True", "train.history_crop=0.5")
    assert done.returncode == 0, done.stderr
    assert [c.split()[:2] for c in calls] == [["train_decoder.py", "configs/decoder_amazon_cpu.gin"]] * 2
    for call, split in zip(calls, ("beauty", "sports")):
        assert f'train.split="{split}"' in call and "train.seed=42" in call and "train.iterations=16000" in call
        assert f'train.save_dir="{tmp_path}/out/s42/succ"' in call
        assert f'train.tokenizer_dir="{tmp_path}/seeds/s42/rqvae"' in call
        assert call.index("train.successor_token=True") < call.index("train.history_crop=0.5") < call.index("train.split")
    assert (tmp_path / "out" / "s42").is_dir()


def test_test_mode_evaluates_both_categories_once(tmp_path):
    done, calls = arm(tmp_path, "succ", "42", "train.successor_token=True", test=True)
    assert done.returncode == 0, done.stderr
    assert all(c.startswith("evaluate.py configs/decoder_amazon_cpu.gin") and "--split test" in c for c in calls)
    assert len(calls) == 2 and all("train.eval_beam_width=30" in c for c in calls)


def test_refuses_no_binding_and_a_missing_tokenizer(tmp_path):
    done, calls = arm(tmp_path, "succ", "42")
    assert done.returncode == 2 and "no binding given" in done.stderr and calls == []
    done, calls = arm(tmp_path, "succ", "43", "train.successor_token=True")
    assert done.returncode == 1 and "no tokenizer in" in done.stderr and calls == []


def test_history_crop_is_the_crop_arm(tmp_path):
    done, calls = drive(tmp_path, "studies/history_crop.sh", "43", seed="43", CROP="0.25")
    assert done.returncode == 0, done.stderr
    assert len(calls) == 2 and all("train.history_crop=0.25" in c and f'save_dir="{tmp_path}/out/s43/crop"' in c
                                   for c in calls)
