#!/usr/bin/env bash
# One arm of a laptop-recipe study (issue 35): configs/decoder_amazon_cpu.gin plus the given gin bindings, Beauty
# and Sports side by side, one torch thread each, 16k steps, on the tokenizers (and against the recipe runs) of
# studies/history_bias_seeds.sh with the same seed. Each arm's rule, written before any of its runs, is in
# studies/results/<arm>_rule.txt. Every run resumes where it stopped when started again.
#
#   PYTHON=.venv/bin/python DATA=../shared/data/amazon CACHE=cache SEEDS_OUT=out/history_bias_seeds \
#       OUT=out/successor_token bash studies/recipe_arm.sh ARM SEED 'train.successor_token=True' [...]
#   TEST=1 ... (the same command)        after the rule's decision: the test, once
#
# 2 cores: ~75 min per seed. Runs land in $OUT/s<seed>/<arm>/amazon-<split>/ (logs beside them); the tokenizer
# is $SEEDS_OUT/s<seed>/rqvae (stage 1 of that script, same seed).
set -euo pipefail
PYTHON=${PYTHON:-python}
DATA=${DATA:-raw_data/amazon}
CACHE=${CACHE:-cache}
SEEDS_OUT=${SEEDS_OUT:-out/history_bias_seeds}
OUT=${OUT:?set OUT: the folder for the arm runs}
TEST=${TEST:-0}
arm=${1:?usage: recipe_arm.sh ARM SEED BINDING...}; seed=${2:?usage: recipe_arm.sh ARM SEED BINDING...}; shift 2
[ $# -gt 0 ] || { echo "recipe_arm.sh: no binding given (the arm is the recipe plus its bindings)" >&2; exit 2; }
tokenizer="$SEEDS_OUT/s$seed/rqvae"
[ -d "$tokenizer" ] || { echo "recipe_arm.sh: no tokenizer in $tokenizer (run studies/history_bias_seeds.sh $seed)" >&2; exit 1; }
dir="$OUT/s$seed"; mkdir -p "$dir"
run=(configs/decoder_amazon_cpu.gin --gin "train.dataset_folder=\"$DATA\"" --gin "train.cache_dir=\"$CACHE\""
     --gin train.num_threads=1 --gin "train.tokenizer_dir=\"$tokenizer\"" --gin "train.save_dir=\"$dir/$arm\""
     --gin train.seed=$seed --gin train.iterations=16000)
for binding in "$@"; do run+=(--gin "$binding"); done
for split in beauty sports; do
  if [ "$TEST" = 1 ]; then  # every user of the test split, the config's 30 beams, both protocols, one at a time
    "$PYTHON" evaluate.py "${run[@]}" --split test --gin "train.split=\"$split\"" --gin train.eval_beam_width=30 \
      > "$dir/test_${arm}_$split.log" 2>&1
  else
    "$PYTHON" train_decoder.py "${run[@]}" --gin "train.split=\"$split\"" --gin train.eval_beam_width=10 \
      >> "$dir/stage2_${arm}_$split.log" 2>&1 &
  fi
done
wait
