#!/usr/bin/env bash
# train.history_bias over three seeds (issue 35): the laptop recipe and the recipe + history_bias, Beauty and
# Sports, both stages reseeded, stage 1 rerun on this machine; the decision rule, written before seeds 43 and 44
# ran, is studies/results/history_bias_seeds_rule.txt. Every run resumes where it stopped when started again.
#
#   bash studies/history_bias_seeds.sh [SEED ...]                  (default: 42 43 44)
#   PYTHON=.venv/bin/python DATA=../shared/data/amazon CACHE=cache OUT=out/history_bias_seeds bash studies/history_bias_seeds.sh 43
#   TEST=1 bash studies/history_bias_seeds.sh 42 43 44                (after the rule's decision: the test, once)
#
# Per seed: stage 1 of both categories side by side, then the four stage-2 runs side by side, one torch thread
# each (2 cores: ~26 min, then ~2.2 h). Runs land in $OUT/s<seed>/{rqvae,recipe,bias}/amazon-<split>/.
set -euo pipefail
PYTHON=${PYTHON:-python}
DATA=${DATA:-raw_data/amazon}
CACHE=${CACHE:-cache}
OUT=${OUT:-out/history_bias_seeds}
seeds=("${@:-42 43 44}")
TEST=${TEST:-0}
common=(--gin "train.dataset_folder=\"$DATA\"" --gin "train.cache_dir=\"$CACHE\"" --gin train.num_threads=1)
arm_bindings() { [ "$1" = bias ] && echo "--gin train.history_bias=True" || true; }
if [ "$TEST" = 1 ]; then
  # The rule's test, once: every run's best.pt (selected as the recipe selects), evaluate.py at the config's 30
  # beams, both protocols, beside the popularity and transition rows, with the run's own bindings; one at a time.
  for seed in ${seeds[@]}; do
    dir="$OUT/s$seed"
    [ -d "$dir" ] || { echo "history_bias_seeds.sh: no runs in $dir (train seed $seed first)" >&2; exit 1; }
    for split in beauty sports; do
      for arm in recipe bias; do
        "$PYTHON" evaluate.py configs/decoder_amazon_cpu.gin --split test "${common[@]}" --gin "train.split=\"$split\"" \
          --gin "train.tokenizer_dir=\"$dir/rqvae\"" --gin "train.save_dir=\"$dir/$arm\"" --gin train.seed=$seed \
          --gin train.eval_beam_width=30 --gin train.iterations=16000 $(arm_bindings $arm) > "$dir/test_${split}_$arm.log" 2>&1
      done
    done
  done
  exit 0
fi
for seed in ${seeds[@]}; do
  dir="$OUT/s$seed"; mkdir -p "$dir"
  for split in beauty sports; do
    "$PYTHON" train_rqvae.py configs/rqvae_amazon_cpu.gin "${common[@]}" --gin "train.split=\"$split\"" \
      --gin "train.save_dir=\"$dir/rqvae\"" --gin train.seed=$seed >> "$dir/stage1_$split.log" 2>&1 &
  done
  wait
  for split in beauty sports; do
    for arm in recipe bias; do
      "$PYTHON" train_decoder.py configs/decoder_amazon_cpu.gin "${common[@]}" --gin "train.split=\"$split\"" \
        --gin "train.tokenizer_dir=\"$dir/rqvae\"" --gin "train.save_dir=\"$dir/$arm\"" --gin train.seed=$seed \
        --gin train.eval_beam_width=10 --gin train.iterations=16000 $(arm_bindings $arm) >> "$dir/stage2_${split}_$arm.log" 2>&1 &
    done
  done
  wait
done
