#!/usr/bin/env bash
# Per example vs all positions (issue 34), side by side on one split and seed: configs/decoder_amazon_cpu.gin and
# configs/decoder_amazon_cpu_allpos.gin (the same recipe with train.all_positions), from the same stage 1, one
# torch thread each, so that their wall times compare with each other. Validation at 10 beams, as the recipe
# studies (studies/recipe_arm.sh). Every run resumes where it stopped when started again.
#
#   PYTHON=.venv/bin/python DATA=../shared/data/amazon CACHE=cache OUT=out/all_positions \
#       TOKENIZER=out/history_bias_seeds/s42/rqvae bash studies/all_positions_pair.sh beauty 42 [BINDING ...]
#   TEST=1 ... (the same command)       after the decision: the test, once, every user, 30 beams, both protocols
#
# BINDINGs go to the all-positions run only, which is then named $ARM (say ARM=lr001 ... 'train.learning_rate=0.001'
# 'train.iterations=12000', the variant of studies/results/all_positions_prior_beauty.md); ARM=none runs the
# per-example run alone, EXAMPLE=0 the all-positions one alone.
#
# Runs land in $OUT/s<seed>/{example,$ARM}/amazon-<split>/, their logs beside them as <arm>_<split>.log and
# <arm>_<split>_test.log, the layout `python -m studies.recipe_seeds --run NAME:SPLIT:SEED:$OUT/s<seed>:<arm>_<split>` reads.
set -euo pipefail
PYTHON=${PYTHON:-python}
DATA=${DATA:-raw_data/amazon}
CACHE=${CACHE:-cache}
OUT=${OUT:?set OUT: the folder for the runs}
TOKENIZER=${TOKENIZER:?set TOKENIZER: the stage-1 run folder (train_rqvae.py save_dir) of this seed}
TEST=${TEST:-0}
split=${1:?usage: all_positions_pair.sh SPLIT SEED [BINDING ...]}; seed=${2:?usage: all_positions_pair.sh SPLIT SEED [BINDING ...]}
shift 2
ARM=${ARM:-allpos}
EXAMPLE=${EXAMPLE:-1}
extra=(); for binding in "$@"; do extra+=(--gin "$binding"); done
arms=(); [ "$EXAMPLE" = 1 ] && arms+=(example); [ "$ARM" != none ] && arms+=("$ARM")
dir="$OUT/s$seed"; mkdir -p "$dir"
common=(--gin "train.dataset_folder=\"$DATA\"" --gin "train.cache_dir=\"$CACHE\"" --gin "train.split=\"$split\""
        --gin train.num_threads=1 --gin "train.tokenizer_dir=\"$TOKENIZER\"" --gin train.seed=$seed)
for arm in "${arms[@]}"; do
  config=(configs/decoder_amazon_cpu.gin)
  [ $arm = example ] || config=(configs/decoder_amazon_cpu_allpos.gin "${extra[@]}")
  if [ "$TEST" = 1 ]; then  # one at a time
    "$PYTHON" evaluate.py "${config[@]}" --split test "${common[@]}" --gin "train.save_dir=\"$dir/$arm\"" \
      --gin train.eval_beam_width=30 > "$dir/${arm}_${split}_test.log" 2>&1
  else
    "$PYTHON" train_decoder.py "${config[@]}" "${common[@]}" --gin "train.save_dir=\"$dir/$arm\"" \
      --gin train.eval_beam_width=10 >> "$dir/${arm}_$split.log" 2>&1 &
  fi
done
wait
