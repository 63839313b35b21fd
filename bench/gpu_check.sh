#!/usr/bin/env bash
# The GPU check: everything that needs a CUDA GPU, in one command.
#
#   bash bench/gpu_check.sh            # outputs under $OUT if set, else ./gpu_check_out
#   PYTHON=/path/to/python bash bench/gpu_check.sh
#
# 1. the ops tests on CUDA (compiled Triton kernel vs the PyTorch reference, plus TestCuda),
# 2. python -m ops.bench (fused vs eager vs torch.compile, B in {4k, 64k, 1M}, fp32 and bf16),
# 3. python -m bench.time_to_quality on Beauty with configs/*_fast.gin (one seed; TTQ_SEEDS for more).
# Each step's log goes to the output folder; a summary table is printed at the end and saved
# as summary.md. A failing step does not stop the later ones. At most 8 files are written
# (the device tool brings back 8): summary.md, ops_tests.log, ops_bench.md, ops_bench.log,
# ops_bench.json, time_to_quality.{md,json,log}. SKIP_OPS=1 runs step 3 alone.
#
# On the lent GPU machine (working tree only, no network, no ../shared): first, here,
#   bash bench/prepare_gpu_carry.sh ../shared/data/amazon cache    # -> .gpu_carry/ (wheels, raw Beauty, embeddings)
# then with the device tool: run(command="bash bench/gpu_check.sh", carry=[".gpu_carry"], timeout_s=600).
# The device image lacks gin-config and polars: they are installed from .gpu_carry/whl into /tmp/site.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-./gpu_check_out}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
unset TRITON_INTERPRET  # compiled kernels on CUDA tensors, not the CPU interpreter
unset TIGER_FORCE_REFERENCE  # the dispatcher must take the kernel

CARRY=.gpu_carry
if ! "$PY" -c "import gin, polars" 2>/dev/null && [ -d "$CARRY/whl" ]; then  # no package index there
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$CARRY"/whl/*.whl \
        && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA GPU visible to $PY: this script is for a GPU machine (CPU tests: python -m pytest -q tests/ops)" >&2
    exit 2
fi

ROWS=()
step() {  # step NAME LOG COMMAND...: run, tee the output into LOG, record status and seconds
    local name=$1 log=$2
    shift 2
    echo "=== $name: $*"
    local start=$SECONDS
    "$@" 2>&1 | tee "$OUT_DIR/$log"
    local rc=${PIPESTATUS[0]}
    local status="ok"
    [ "$rc" -eq 0 ] || status="FAILED (exit $rc)"
    ROWS+=("| $name | $status | $((SECONDS - start)) | $log |")
}

if [ "${SKIP_OPS:-0}" != 1 ]; then
# --- 1. kernel tests on CUDA
step "ops tests (CUDA)" ops_tests.log "$PY" -m pytest -q -p no:cacheprovider -rs tests/ops

# --- 2. benchmark: the table (stdout) is what goes into bench/results/residual_quantization.md
echo "=== ops benchmark"
start=$SECONDS
"$PY" -m ops.bench --json "$OUT_DIR/ops_bench.json" > "$OUT_DIR/ops_bench.md" 2> "$OUT_DIR/ops_bench.log"
rc=$?
cat "$OUT_DIR/ops_bench.md"
[ "$rc" -eq 0 ] && status="ok" || { status="FAILED (exit $rc)"; tail -n 30 "$OUT_DIR/ops_bench.log"; }
ROWS+=("| ops benchmark | $status | $((SECONDS - start)) | ops_bench.md |")
fi

# --- 3. time to quality: raw Beauty -> features, stage 1, stage 2, test evaluation, timed
# python -m bench.time_to_quality with the fast configs on CUDA; checkpoints stay in /tmp (too big
# to come back), the table and JSON go to the output folder. TTQ_SEEDS="42 43 44" for the 3-seed mean
# (about 3x the time: run it alone, SKIP_OPS=1). TTQ_ARGS adds arguments, e.g.
# TTQ_ARGS="--decoder-gin train.iterations=2000" for a quick look.
TTQ_ROOT="${TTQ_ROOT:-$CARRY/amazon}"
if [ -d "$TTQ_ROOT/raw/beauty" ]; then
    TTQ_CACHE=/tmp/ttq_cache TTQ_RUNS=/tmp/ttq_runs
    rm -rf "$TTQ_CACHE" "$TTQ_RUNS"
    mkdir -p "$TTQ_CACHE"
    [ -d "$CARRY/cache" ] && cp -r "$CARRY/cache/." "$TTQ_CACHE/"  # the item embeddings: reported as cached
    # shellcheck disable=SC2086
    # timeout: past TTQ_TIMEOUT seconds (default 480) the run is stopped so that the summary still
    # prints inside the device tool's 600 s per command; the log's progress bars then show the step rate.
    step "time to quality (Beauty, seeds ${TTQ_SEEDS:-42})" time_to_quality.log \
        timeout "${TTQ_TIMEOUT:-480}" "$PY" -m bench.time_to_quality --root "$TTQ_ROOT" --cache-dir "$TTQ_CACHE" --out-dir "$TTQ_RUNS" \
        --device cuda --seeds ${TTQ_SEEDS:-42} \
        --rqvae-config configs/rqvae_amazon_fast.gin --decoder-config configs/decoder_amazon_fast.gin ${TTQ_ARGS:-}
    cp "$TTQ_RUNS/time_to_quality.md" "$TTQ_RUNS/time_to_quality.json" "$OUT_DIR/" 2>/dev/null
else
    echo "no Beauty data at $TTQ_ROOT/raw/beauty: time to quality skipped (bash bench/prepare_gpu_carry.sh, carry .gpu_carry)"
    ROWS+=("| time to quality | SKIPPED (no data at $TTQ_ROOT) | 0 | |")
fi

# --- summary
{
    echo "# GPU check"
    echo
    "$PY" - <<'EOF'
import torch, triton
p = torch.cuda.get_device_properties(0)
print(f"{torch.cuda.get_device_name(0)}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs;"
      f" torch {torch.__version__}, triton {triton.__version__}, CUDA {torch.version.cuda}")
EOF
    echo
    echo "| step | status | seconds | log |"
    echo "| --- | --- | ---: | --- |"
    printf '%s\n' "${ROWS[@]}"
    echo
    [ -f "$OUT_DIR/ops_tests.log" ] && echo "ops tests: $(tail -n 1 "$OUT_DIR/ops_tests.log")"
    "$PY" - "$OUT_DIR/ops_bench.json" <<'EOF'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    sys.exit(print("benchmark: no results"))
print(f"copy bandwidth: {r['copy_gbps']:.0f} GB/s")
for row in r["rows"]:
    if row["B"] == 1 << 20 and row["pass"] == "fwd" and row["mode"] in ("fused", "eager", "compiled"):
        print(f"B=1M {row['dtype']} {row['mode']} fwd: {row['ms']:.3f} ms, {row['gbps']:.0f} GB/s"
              f" ({row['pct_copy']:.0f}% of copy), {row.get('speedup_vs_eager') or 0:.1f}x eager")
if "target_met" in r:
    print(f"target (B=1M fp32 fused fwd >= 5x eager and >= 50% copy BW): {'MET' if r['target_met'] else 'NOT MET'}")
EOF
    [ -f "$OUT_DIR/time_to_quality.md" ] && { echo; cat "$OUT_DIR/time_to_quality.md"; }
} | tee "$OUT_DIR/summary.md"
