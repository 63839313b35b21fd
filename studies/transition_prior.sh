#!/usr/bin/env bash
# The search's transition prior (train.eval_transition_prior) on the trained laptop-recipe runs of
# studies/history_bias_seeds.sh (recipe and history_bias, seeds 42-44, Beauty and Sports): no training.
#   validation grid:  PYTHON=.venv/bin/python DATA=../shared/data/amazon CACHE=cache RUNS=/work/runs/p10 \
#                     OUT=/work/runs/p15 bash studies/transition_prior.sh
#   the test, once:   TEST=1 W=3 ... bash studies/transition_prior.sh   (W = 0 and W, both protocols, one at a time)
# Rule: studies/results/transition_prior_rule.txt. Each run's best.pt as its training chose it.
set -euo pipefail
PYTHON=${PYTHON:-python}; DATA=${DATA:?the data set folder}; CACHE=${CACHE:?the cache folder}
RUNS=${RUNS:?the folder holding s<seed>/rqvae, recipe and bias}; OUT=${OUT:?where the logs go}
TEST=${TEST:-0}; W=${W:-3}
mkdir -p "$OUT"
for seed in 42 43 44; do
  dir="$RUNS/s$seed"
  for split in beauty sports; do
    if [ "$TEST" = 1 ]; then
      for arm in recipe bias; do
        bias=$([ "$arm" = bias ] && echo "--gin train.history_bias=True" || true)
        for weight in 0 "$W"; do
          "$PYTHON" evaluate.py configs/decoder_amazon_cpu.gin --split test --gin "train.dataset_folder=\"$DATA\"" \
            --gin "train.cache_dir=\"$CACHE\"" --gin train.num_threads=2 --gin "train.split=\"$split\"" \
            --gin "train.tokenizer_dir=\"$dir/rqvae\"" --gin "train.save_dir=\"$dir/$arm\"" --gin train.seed=$seed \
            --gin train.eval_beam_width=30 --gin train.iterations=16000 $bias \
            --gin "train.eval_transition_prior=$weight" > "$OUT/test_s${seed}_${split}_${arm}_w$weight.log" 2>&1
        done
      done
    else
      "$PYTHON" -m studies.successor_prior --root "$DATA" --cache-dir "$CACHE" --split "$split" \
        --run "recipe:$dir/recipe/amazon-$split/best.pt:$dir/rqvae/amazon-$split/semantic_ids.pt" \
        --run "history_bias:$dir/bias/amazon-$split/best.pt:$dir/rqvae/amazon-$split/semantic_ids.pt" \
        --weights 0 0.5 1 1.5 2 3 --beam-width 30 --json "$OUT/valid_s${seed}_$split.json" > "$OUT/valid_s${seed}_$split.log" 2>&1
    fi
  done
done
