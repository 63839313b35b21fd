#!/usr/bin/env bash
# Keep best.pt as it stood at every validation of a running train_decoder.py run, so that the run's best.pt
# "within the first N steps" can be read afterwards without training again for N steps (the learning-rate
# schedule does not depend on train.iterations: a run cut at N selects the same best.pt).
#
#   bash studies/best_snapshots.sh RUN_DIR &     # RUN_DIR: <save_dir>/<dataset>-<split>, while the run trains
#
# train_decoder.py writes curve.jsonl, then best.pt (when improved), then checkpoint.pt and its manifest
# checkpoint.json: once checkpoint.json names step S, best.pt is the best of the validations up to S. It is copied,
# with best.json, to RUN_DIR/best_at/<S>/; such a folder is a save_dir's <dataset>-<split> for evaluate.py
# (`--gin train.save_dir=...` pointing at a folder whose <dataset>-<split> links to it). Stops when the run's
# last step (its config.gin's train.iterations) is copied.
set -euo pipefail
run=${1:?usage: best_snapshots.sh RUN_DIR}
last=""
while :; do
  if [ -f "$run/checkpoint.json" ] && [ -f "$run/best.pt" ]; then
    step=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["step"])' "$run/checkpoint.json")
    if [ "$step" != "$last" ]; then
      mkdir -p "$run/best_at/$step"
      cp "$run/best.pt" "$run/best.json" "$run/config.gin" "$run/best_at/$step/"
      last=$step
      iterations=$(sed -n 's/^train.iterations = //p' "$run/config.gin")
      [ "$step" = "$iterations" ] && exit 0
    fi
  fi
  sleep "${POLL_SECONDS:-5}"
done
