#!/usr/bin/env bash
# SASRec (train_sasrec.py) on Amazon Beauty and Sports with both losses, one run at a time, niced; the runs
# behind studies/results/sasrec_amazon.md (tables: python -m studies.sasrec_report).
#
#   bash studies/sasrec_amazon.sh [SEED ...]                       (default seed: 42)
#   PYTHON=.venv/bin/python DATA=../shared/data/amazon CACHE=cache OUT=out/sasrec_amazon SPLITS="beauty sports" \
#       LOSSES="bce ce" bash studies/sasrec_amazon.sh 42 43 44
#
# Run <loss>_seed<seed> on split S lands in $OUT/<loss>_seed<seed>/amazon-S/ (train_sasrec.py's files) with
# run.json beside them: the command as run, the commit, whether tracked files differed from it, the
# machine and the process's wall time. Existing runs are skipped (delete the folder to redo one).
set -euo pipefail
PYTHON=${PYTHON:-python}
DATA=${DATA:-raw_data/amazon}
CACHE=${CACHE:-cache}
OUT=${OUT:-out/sasrec_amazon}
SPLITS=${SPLITS:-beauty sports}
LOSSES=${LOSSES:-bce ce}
seeds=("${@:-42}")

commit=$(git rev-parse HEAD)
dirty=$([ -z "$(git status --porcelain --untracked-files=no)" ] && echo false || echo true)
machine="$(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
for seed in "${seeds[@]}"; do
  for split in $SPLITS; do
    for loss in $LOSSES; do
      config=configs/sasrec_amazon.gin
      [ "$loss" = ce ] && config=configs/sasrec_amazon_ce.gin
      save="$OUT/${loss}_seed$seed"
      folder="$save/amazon-$split"
      if [ -f "$folder/run.json" ]; then echo "skip $folder (done)"; continue; fi
      cmd=(nice -n 5 "$PYTHON" train_sasrec.py "$config" --gin "train.dataset_folder=\"$DATA\""
           --gin "train.cache_dir=\"$CACHE\"" --gin "train.save_dir=\"$save\"" --gin "train.split=\"$split\""
           --gin "train.seed=$seed")
      echo "$folder: ${cmd[*]}"
      mkdir -p "$save"
      start=$(date +%s.%N)
      "${cmd[@]}" > "$save/$split.stdout" 2> "$save/$split.log"
      end=$(date +%s.%N)
      "$PYTHON" - "$folder/run.json" "$commit" "$dirty" "$machine" "$start" "$end" "${cmd[@]}" <<'EOF'
import json, shlex, sys
path, commit, dirty, machine, start, end, *cmd = sys.argv[1:]
json.dump({"command": shlex.join(cmd), "commit": commit, "dirty": dirty == "true", "machine": machine,
           "process_wall_seconds": round(float(end) - float(start), 1)}, open(path, "w"), indent=1)
EOF
      tail -n 6 "$save/$split.log"
    done
  done
done
