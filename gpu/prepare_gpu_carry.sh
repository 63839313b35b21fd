#!/usr/bin/env bash
# Prepare .gpu_carry/: what gpu/gpu_check.sh needs on a GPU machine that has the working tree
# and nothing else (no network, no package index, no ../shared data). Run here, once:
#
#   bash gpu/prepare_gpu_carry.sh [RAW_ROOT] [CACHE_DIR]
#       RAW_ROOT   the Amazon folder holding raw/beauty/ (default ../shared/data/amazon)
#       CACHE_DIR  a cache_dir whose amazon/beauty/ holds Beauty's MiniLM item embeddings
#                  (default cache; make it with `python -m data` or any stage-1 run)
#
# .gpu_carry/ (ignored by .gitignore, never committed; ~62 MiB of the device tool's
# 64 MiB per call, so carry nothing else with it):
#   whl/                 wheels the GPU image lacks: gin-config, polars (1.33.1: the 2.x split
#                        runtime wheel alone is 54 MB; the data tests pass with 1.33.1)
#   amazon/raw/beauty/   the raw P5 Beauty files (3 MB): the benchmark parses them, timed
#   cache/amazon/beauty/ the item embeddings only (18.6 MB): the sentence model's wheel is too
#                        big to carry, so the benchmark reports the embedding as cached
# Then, with the device tool: run(command="bash gpu/gpu_check.sh", carry=[".gpu_carry"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/.."
RAW_ROOT="${1:-../shared/data/amazon}"
CACHE_DIR="${2:-cache}"
PY="${PYTHON:-python3}"
CARRY=.gpu_carry

rm -rf "$CARRY"
mkdir -p "$CARRY/whl" "$CARRY/amazon/raw" "$CARRY/cache/amazon/beauty"

# Wheels for the device's Python 3.12 on x86-64 (package index here; none there).
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$CARRY/whl" gin-config==0.5.0 polars==1.33.1

cp -r "$RAW_ROOT/raw/beauty" "$CARRY/amazon/raw/beauty"
chmod -R u+w "$CARRY/amazon"
"$PY" - "$RAW_ROOT" "$CACHE_DIR" "$CARRY/cache" <<'EOF'
import shutil, sys
from data.item_embeddings import cache_path
from data.item_text import TEXT_TEMPLATE
from data.processed import RecDataset, cache_folder, load_processed

root, cache, carry = sys.argv[1:]
raw = load_processed(root, RecDataset.AMAZON, "beauty", cache)  # the processed cache, or a parse of the raw files
path = cache_path(cache_folder(cache, RecDataset.AMAZON, "beauty"), raw.texts, None, TEXT_TEMPLATE)
if not path.is_file():
    sys.exit(f"no Beauty embeddings at {path}: run `python -m data` (or train_rqvae.py) with cache_dir={cache} first")
shutil.copy(path, cache_folder(carry, RecDataset.AMAZON, "beauty") / path.name)
print(f"embeddings: {path}")
EOF
du -sh "$CARRY"
tree_mib=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -n 1 | cut -f1)
carry_mib=$(du -sb "$CARRY" | cut -f1)
echo "tracked files $((tree_mib / 1048576)) MiB + $CARRY $((carry_mib / 1048576)) MiB (the device tool takes 64 MiB a call)"
