#!/usr/bin/env bash
# The GPU check: everything that needs a CUDA GPU, in one command.
#
#   bash bench/gpu_check.sh            # outputs under $OUT if set, else ./gpu_check_out
#   PYTHON=/path/to/python bash bench/gpu_check.sh
#
# 1. the ops tests on CUDA (compiled Triton kernel vs the PyTorch reference, plus TestCuda),
# 2. python -m ops.bench (fused vs eager vs torch.compile, B in {4k, 64k, 1M}, fp32 and bf16),
# 3. a timed short end-to-end Beauty run of both stages (PLACEHOLDER below, filled in by the lead).
# Each step's log goes to the output folder; a summary table is printed at the end and saved
# as summary.md. A failing step does not stop the later ones. At most 8 files are written
# (the device tool brings back 8): summary.md, ops_tests.log, ops_bench.md, ops_bench.log,
# ops_bench.json, and the Beauty run's logs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-./gpu_check_out}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
unset TRITON_INTERPRET  # compiled kernels on CUDA tensors, not the CPU interpreter
unset TIGER_FORCE_REFERENCE  # the dispatcher must take the kernel

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

# ======================= PLACEHOLDER: timed end-to-end Beauty run (the lead fills this in) =======================
# Both stages, short, timed; each entry point prints one JSON line of final metrics last.
# The GPU image lacks gin-config (and other requirements): carry them as wheels in .whl/ (device README)
# and install them first; carry the Beauty raw data inside the repo (e.g. raw_data/amazon, gitignored).
# Example shape of the two steps (bindings to be decided by the lead):
#   step "Beauty: train_rqvae" beauty_rqvae.log "$PY" train_rqvae.py configs/rqvae_amazon.gin \
#       --gin 'train.dataset_folder="raw_data/amazon"' --gin 'train.save_dir="'"$OUT_DIR"'/runs"'
#   step "Beauty: train_decoder" beauty_decoder.log "$PY" train_decoder.py configs/decoder_amazon.gin \
#       --gin 'train.dataset_folder="raw_data/amazon"' --gin 'train.tokenizer_dir="'"$OUT_DIR"'/runs"'
# (checkpoints under $OUT_DIR/runs would be too deep/large to come back: keep only the logs there.)
# ==================================================== END PLACEHOLDER ===========================================

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
    echo "ops tests: $(tail -n 1 "$OUT_DIR/ops_tests.log")"
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
} | tee "$OUT_DIR/summary.md"
