#!/usr/bin/env bash
# train.history_crop (issue 35): the laptop recipe with each training example's history cut, with chance 0.5, to
# its last k of n items; Beauty and Sports side by side, one torch thread each, on the tokenizers (and against the
# recipe runs) of studies/history_bias_seeds.sh. The rule, written before any code or run of the arm, is
# studies/results/history_crop_rule.txt. Every run resumes where it stopped when started again.
#
#   PYTHON=.venv/bin/python DATA=../shared/data/amazon CACHE=cache SEEDS_OUT=out/history_bias_seeds \
#       OUT=out/history_crop bash studies/history_crop.sh SEED
#   TEST=1 ... bash studies/history_crop.sh SEED        (after the rule's decision: the test, once)
#
# 2 cores: ~75 min per seed. Runs land in $OUT/s<seed>/crop/amazon-<split>/; the tokenizer is
# $SEEDS_OUT/s<seed>/rqvae (stage 1 of that script, same seed).
set -euo pipefail
PYTHON=${PYTHON:-python}
DATA=${DATA:-raw_data/amazon}
CACHE=${CACHE:-cache}
SEEDS_OUT=${SEEDS_OUT:-out/history_bias_seeds}
OUT=${OUT:-out/history_crop}
CROP=${CROP:-0.5}
TEST=${TEST:-0}
seed=${1:?usage: history_crop.sh SEED}
tokenizer="$SEEDS_OUT/s$seed/rqvae"
[ -d "$tokenizer" ] || { echo "history_crop.sh: no tokenizer in $tokenizer (run studies/history_bias_seeds.sh $seed)" >&2; exit 1; }
dir="$OUT/s$seed"; mkdir -p "$dir"
run=(configs/decoder_amazon_cpu.gin --gin "train.dataset_folder=\"$DATA\"" --gin "train.cache_dir=\"$CACHE\""
     --gin train.num_threads=1 --gin "train.tokenizer_dir=\"$tokenizer\"" --gin "train.save_dir=\"$dir/crop\""
     --gin train.seed=$seed --gin train.iterations=16000 --gin train.history_crop=$CROP)
for split in beauty sports; do
  if [ "$TEST" = 1 ]; then  # every user of the test split, the config's 30 beams, both protocols, one at a time
    "$PYTHON" evaluate.py "${run[@]}" --split test --gin "train.split=\"$split\"" --gin train.eval_beam_width=30 \
      > "$dir/test_$split.log" 2>&1
  else
    "$PYTHON" train_decoder.py "${run[@]}" --gin "train.split=\"$split\"" --gin train.eval_beam_width=10 \
      >> "$dir/stage2_$split.log" 2>&1 &
  fi
done
wait
