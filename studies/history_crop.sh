#!/usr/bin/env bash
# train.history_crop (issue 35): the laptop recipe with each training example's history cut, with chance CROP
# (0.5), to its last k of n items; an arm of studies/recipe_arm.sh (Beauty and Sports side by side, against the
# recipe runs of studies/history_bias_seeds.sh). The rule, written before any code or run of the arm, is
# studies/results/history_crop_rule.txt.
#
#   PYTHON=.venv/bin/python DATA=../shared/data/amazon CACHE=cache SEEDS_OUT=out/history_bias_seeds \
#       OUT=out/history_crop bash studies/history_crop.sh SEED
#   TEST=1 ... bash studies/history_crop.sh SEED        (after the rule's decision: the test, once)
#
# Runs land in $OUT/s<seed>/crop/amazon-<split>/. (Seeds 42-44 ran before this called recipe_arm.sh: their
# training logs are $OUT/s<seed>/stage2_<split>.log.)
set -euo pipefail
export OUT=${OUT:-out/history_crop}
exec bash "$(dirname "$0")/recipe_arm.sh" crop "${1:?usage: history_crop.sh SEED}" "train.history_crop=${CROP:-0.5}"
