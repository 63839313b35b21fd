#!/usr/bin/env bash
# The probes of issue 12 ("first contact"), re-run as a new user would type them, in a fresh clone
# of this repository with no data and (where `unshare -rn` works) no network. For each probe it
# prints the command, its stderr (progress bars dropped), the exit status, the wall time and what
# was left behind (`git status --short --ignored` of the clone, plus a listing of any folder
# outside it that the probe was pointed at). Markdown on stdout:
#
#   bash bench/first_contact_probes.sh [DATA_ROOT] [CACHE] > bench/results/first_contact_probes.md
#
# DATA_ROOT: the Amazon data root holding raw/beauty/ (default ../shared/data/amazon, read-only is
# fine); it is linked as ../shared/data/amazon beside the clone, so the commands read as the README's.
# CACHE: optional cache folder with Beauty's item embeddings (<CACHE>/amazon/beauty/), copied into the
# clone's cache/ before the first real-data probe; without it the first run embeds the 12,101 item
# texts (about 7.5 min on 2 CPU cores). THREADS=N binds train.num_threads=N in the real-data runs
# (default: the configs' own); QUICK=1 stops before the real-data part. The real-data part (smoke run of both stages, a few steps of the paper
# decoder) takes a few minutes of CPU.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=$(cd "${1:-$REPO/../shared/data/amazon}" && pwd)
CACHE_SRC=${2:-}
THREADS=${THREADS:-}
PYTHON=${PYTHON:-python}
WORK=$(mktemp -d /tmp/first_contact.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

git clone -q "$REPO" "$WORK/repo"
mkdir -p "$WORK/shared/data" && ln -s "$DATA" "$WORK/shared/data/amazon"
cd "$WORK/repo"
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the listings
unset TIGER_DEBUG
NONET=""
if unshare -rn true 2>/dev/null; then NONET="unshare -rn"; fi  # a network namespace with no interface
THREAD_FLAG=${THREADS:+ --gin train.num_threads=$THREADS}
OFFLINE_DATA="--gin 'train.dataset_folder=\"../shared/data/amazon\"'"

echo "# First-contact probes (issue 12)"
echo
echo "Produced by \`bench/first_contact_probes.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)."
echo "Machine: $(uname -n), $(grep -c ^processor /proc/cpuinfo) CPU cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), no GPU used;"
echo "$($PYTHON -c 'import sys, torch; print(f"Python {sys.version.split()[0]}, torch {torch.__version__}")')."
echo "Every command runs in a fresh clone (\`git clone\` of the repository: no raw_data/, cache/ or out/)"
if [ -n "$NONET" ]; then where="inside \`unshare -rn\` (no network at all)"; else where="with whatever network the machine has"; fi
echo "$where; ${THREADS:+train.num_threads=$THREADS in the real-data runs; }"
echo "wall times are upper bounds when the machine is shared. \"Left behind\" is \`git status --short --ignored\` of"
echo "the clone (after the probe) and, for probes pointed elsewhere, a listing of that folder."

probe() {  # probe TITLE COMMAND [FOLDER...]: run COMMAND (a shell string) in the clone
    local title=$1 command=$2; shift 2
    echo; echo "## $title"; echo
    echo '```'; echo "\$ $command"; echo '```'
    local start end status
    start=$(date +%s.%N)
    eval "$NONET $command" >"$WORK/stdout" 2>"$WORK/stderr"
    status=$?
    end=$(date +%s.%N)
    report "$status" "$(printf '%.1f' "$(echo "$end - $start" | bc)")" "$@"
}

report() {  # report STATUS SECONDS [FOLDER...]
    local status=$1 seconds=$2; shift 2
    echo "exit status **$status**, ${seconds} s; stderr (progress bars dropped):"; echo
    echo '```'
    # tqdm redraws with '\r': keep whole lines that are not a bar
    local err
    err=$(tr '\r' '\n' <"$WORK/stderr" | grep -Ev '^\s*$|[0-9]+%\|' | tail -n "${TAIL:-12}")
    echo "${err:-(empty)}"
    echo '```'
    echo; echo "Left behind:"; echo; echo '```'
    local left
    left=$(git status --short --ignored)
    echo "\$ git status --short --ignored"; echo "${left:-(nothing)}"
    for folder in "$@"; do echo "\$ find $folder | sort"; find "$folder" 2>/dev/null | sort || true; done
    echo '```'
}

# ------------------------------------------------------------------ no data, no network
probe "No data, no network: Amazon" "$PYTHON train_rqvae.py configs/rqvae_amazon.gin"
probe "No data, no network: MovieLens 1M" "$PYTHON train_rqvae.py configs/rqvae_ml1m.gin"

# ------------------------------------------------------------------ command line
probe "A plain flag instead of --gin (stage 1)" "$PYTHON train_rqvae.py configs/rqvae_amazon.gin --iterations 30"
probe "A plain flag instead of --gin (stage 2)" "$PYTHON train_decoder.py configs/decoder_amazon.gin --iterations 30"
probe "A config file that does not exist" "$PYTHON train_rqvae.py configs/nope.gin"
probe "A misspelled binding" "$PYTHON train_rqvae.py configs/rqvae_amazon.gin --gin 'train.learnin_rate=0.1'"

# ------------------------------------------------------------------ numbers checked where they are bound
for binding in batch_size=-5 batch_size=0 eval_every=0 iterations=0; do
    probe "train.$binding (stage 1)" "$PYTHON train_rqvae.py configs/rqvae_amazon.gin --gin 'train.$binding'"
done
for binding in 'optimizer="sgd"' 'precision="fp16"' lr_ramp_steps=-1 lr_constant_steps=0 dropout=1.0; do
    probe "train.$binding (stage 2)" "$PYTHON train_decoder.py configs/decoder_amazon.gin --gin 'train.$binding'"
done

# ------------------------------------------------------------------ damaged raw data (a copy of Beauty's, outside the clone)
BAD="$WORK/bad"
fresh_copy() { rm -rf "$BAD"; mkdir -p "$BAD/raw/beauty"; cp "$DATA"/raw/beauty/* "$BAD/raw/beauty/"; chmod u+w "$BAD"/raw/beauty/*; }
BAD_FLAGS="--gin 'train.dataset_folder=\"$BAD\"'"
fresh_copy; head -n $(( $(wc -l <"$BAD/raw/beauty/sequential_data.txt") / 2 )) "$DATA/raw/beauty/sequential_data.txt" >"$BAD/raw/beauty/sequential_data.txt"
probe "sequential_data.txt cut in half" "$PYTHON train_rqvae.py configs/rqvae_amazon_smoke.gin $BAD_FLAGS" "$BAD"
fresh_copy; sed -i '1234s/ / x/' "$BAD/raw/beauty/sequential_data.txt"
probe "A garbled line (line 1234: 'x' before its first item)" "$PYTHON train_rqvae.py configs/rqvae_amazon_smoke.gin $BAD_FLAGS" "$BAD"
fresh_copy; echo "{'asin': 'B000000001'}" >"$BAD/raw/beauty/meta.json.gz"
probe "meta.json.gz that is not gzip" "$PYTHON train_rqvae.py configs/rqvae_amazon_smoke.gin $BAD_FLAGS" "$BAD"
fresh_copy; head -c 150000 "$DATA/raw/beauty/meta.json.gz" >"$BAD/raw/beauty/meta.json.gz"
probe "meta.json.gz cut short (first 150,000 bytes)" "$PYTHON train_rqvae.py configs/rqvae_amazon_smoke.gin $BAD_FLAGS" "$BAD"
rm -rf "$BAD"

[ "${QUICK:-0}" = 1 ] && exit 0  # QUICK=1: the error probes only (seconds each), no training

# ------------------------------------------------------------------ real data: too short a stage 1, the smoke path
if [ -n "$CACHE_SRC" ]; then
    mkdir -p cache && cp -r "$CACHE_SRC"/. cache/
    echo; echo "(cache/ copied from the embedding cache given: $(find cache -type f | wc -l) files)"
fi
probe "Stage 1 with train.iterations=30" \
    "$PYTHON train_rqvae.py configs/rqvae_amazon.gin $OFFLINE_DATA --gin train.iterations=30 --gin 'train.save_dir=\"out/rqvae_30\"'$THREAD_FLAG"
TAIL=6 probe "Smoke run, stage 1" "$PYTHON train_rqvae.py configs/rqvae_amazon_smoke.gin $OFFLINE_DATA$THREAD_FLAG"
TAIL=6 probe "Smoke run, stage 2" "$PYTHON train_decoder.py configs/decoder_amazon_smoke.gin $OFFLINE_DATA$THREAD_FLAG"
TAIL=14 probe "Smoke run, test evaluation" "$PYTHON evaluate.py configs/decoder_amazon_smoke.gin --split test $OFFLINE_DATA$THREAD_FLAG"
TAIL=8 probe "Resuming stage 2 with another eval_every (and 40 more steps)" \
    "$PYTHON train_decoder.py configs/decoder_amazon_smoke.gin $OFFLINE_DATA --gin train.iterations=340 --gin train.eval_every=170$THREAD_FLAG"
TAIL=16 probe "evaluate.py --user 5: that user alone" "$PYTHON evaluate.py configs/decoder_amazon_smoke.gin --user 5 $OFFLINE_DATA$THREAD_FLAG"

# ------------------------------------------------------------------ --help
probe "train_rqvae.py --help (its first lines)" "$PYTHON train_rqvae.py --help"
echo; echo '```'; head -n 14 "$WORK/stdout"; echo '...'; echo '```'
probe "evaluate.py --help (its options)" "$PYTHON evaluate.py --help"
echo; echo '```'; sed -n '/^options:/,$p' "$WORK/stdout"; echo '```'

# ------------------------------------------------------------------ the paper's decoder on a CPU: stopped once it has said how long it would take
command="$PYTHON train_decoder.py configs/decoder_amazon.gin $OFFLINE_DATA --gin 'train.tokenizer_dir=\"out/rqvae_smoke\"' --gin 'train.save_dir=\"out/decoder_paper\"'$THREAD_FLAG"
echo; echo "## The paper's decoder config on a CPU (stopped after its estimate, at most ${PAPER_WAIT:-600} s)"; echo
echo '```'; echo "\$ $command"; echo '```'
start=$(date +%s.%N)
bash -c "exec $NONET $command" >"$WORK/stdout" 2>"$WORK/stderr" &  # exec: $! is the training process itself
pid=$!
for _ in $(seq "${PAPER_WAIT:-600}"); do
    tr '\r' '\n' <"$WORK/stderr" 2>/dev/null | grep -q "^note: " && break  # tqdm.write starts with '\r'

    kill -0 "$pid" 2>/dev/null || break
    sleep 1
done
kill "$pid" 2>/dev/null; wait "$pid"; status=$?
end=$(date +%s.%N)
TAIL=8 report "$status" "$(printf '%.1f' "$(echo "$end - $start" | bc)")" out/decoder_paper
echo; echo "(stopped by this script with SIGTERM once the note was printed: exit status 143 is that)"
