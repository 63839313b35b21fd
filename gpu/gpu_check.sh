#!/usr/bin/env bash
# The GPU check: everything that needs a CUDA GPU, in one command of the device tool (600 s, 8 files back).
#
#   bash gpu/gpu_check.sh              # MODE=check (default): kernel tests, kernel benchmark, time to quality
#   MODE=issues bash gpu/gpu_check.sh  # what the open issues still need a GPU for, in one call (below)
#   MODE=sweep bash gpu/gpu_check.sh   # decoder sweep: one tokenizer, the arms of gpu/gpu_sweep_arms.txt
#   PYTHON=/path/to/python bash gpu/gpu_check.sh
#
# Outputs under $OUT if set, else ./gpu_check_out. Each step's log goes there; a summary naming the card
# and the torch/triton/CUDA versions is printed at the end and saved as summary.md. A failing step does
# not stop the later ones; the exit status is 1 if one failed. The last step of either mode is stopped
# GPU_CHECK_SECONDS (default 570) after the start, so the summary is written inside the 600 s.
#
# MODE=check, 8 files: summary.md, ops_tests.log, ops_bench.{md,log,json}, time_to_quality.{md,json,log}
# 1. the ops tests on CUDA (compiled Triton kernel vs the PyTorch reference, plus TestCuda),
# 2. python -m ops.bench (fused vs eager vs torch.compile, B in {4k, 64k, 1M}, fp32 and bf16),
# 3. python -m bench.decoder_step on MovieLens-32M's training step, per example (decoder_ml32m.gin: batch 256
#    of 801-token inputs) and all positions (decoder_ml32m_allpos.gin: 128 windows of 400 items, 200 targets
#    each), whole and in the configs' micro-batches: s/step, targets/s, TFLOP/s, peak memory, the config's
#    run and one pass of the 31.4M training targets in hours (issue 34); the tables go into summary.md (no
#    files of their own: the 8 are taken), with the ratio of the two modes' best targets/s,
# 4. python -m studies.time_to_quality on Beauty with configs/*_fast.gin (one seed; TTQ_SEEDS for more,
#    TTQ_PARALLEL=N runs N of them side by side on the GPU, each with nproc/N CPU threads).
# SKIP_OPS=1 skips steps 1-2 (the first H200 window: steps 1-3 took 331 s of the 570); SKIP_STEP=1 skips 3.
# MODE=issues is MODE=check with SKIP_OPS=1 TTQ_SEEDS="42 43 44" TTQ_PARALLEL=3 (each can be set otherwise):
#    step 3 (issue 34: ML-32M on a GPU, both modes, ~2 min) and the fast recipe's three seeds side by side,
#    whose evaluation now prints the plain protocol too (issue 35: the README's "not measured"; seeds 43-44
#    took 288 s as two side by side on an H200). The kernel's tests and benchmark were measured on an H200.
# MODE=sweep, 4 files: summary.md, sweep.{md,json,log} (and sweep_stdout.log if the sweep failed)
#    python -m studies.sweep: stage 1 once, then every arm of SWEEP_ARMS (default gpu/gpu_sweep_arms.txt)
#    trains the decoder from that tokenizer within its share of the time; validation NDCG@10 / Recall@10
#    against wall time per arm. SWEEP_ARGS adds arguments (e.g. "--decoder-gin train.compile_model=True").
#    SWEEP_PARALLEL=N trains N arms side by side (waves of N; each arm nproc/N CPU threads).
#
# On the lent GPU machine (working tree only, no network, no ../shared): first, here,
#   bash gpu/prepare_gpu_carry.sh ../shared/data/amazon cache    # -> .gpu_carry/ (wheels, raw Beauty, embeddings)
#   bash gpu/gpu_preflight.sh                                     # every step below, toy-sized, on this CPU
# then with the device tool: run(command="bash gpu/gpu_check.sh", carry=[".gpu_carry"], timeout_s=600).
# The device image lacks gin-config and polars: they are installed from .gpu_carry/whl (no index there).
#
# GPU_CHECK_CPU_TOY=1 is for gpu/gpu_preflight.sh alone: the same steps on the CPU at toy size
# (kernel under TRITON_INTERPRET=1, tiny models, 64 validation users); its numbers mean nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE="${MODE:-check}"
OUT_DIR="${OUT:-./gpu_check_out}"
PY="${PYTHON:-python3}"
CARRY=.gpu_carry
SCRATCH="${GPU_CHECK_SCRATCH:-/tmp}"  # runs, caches and the wheels' install folder (too big to come back)
CPU_TOY="${GPU_CHECK_CPU_TOY:-0}"
export PYTHONUNBUFFERED=1
fail() { echo "gpu_check: $*" >&2; exit 3; }
case "$MODE" in check | sweep) ;; issues)  # the open issues' GPU work: see the header
    MODE=check SKIP_OPS="${SKIP_OPS:-1}" TTQ_SEEDS="${TTQ_SEEDS:-42 43 44}" TTQ_PARALLEL="${TTQ_PARALLEL:-3}" ;;
    *) fail "MODE=$MODE: expected check, issues or sweep" ;; esac
mkdir -p "$OUT_DIR" "$SCRATCH"
rm -f "$SCRATCH"/decoder_step*.md "$SCRATCH"/decoder_step*.json  # the summary prints only what this call measured

# The wheels the device image lacks (no package index there): installed, then imported, or stop here.
if ! "$PY" -c "import gin, polars" 2>/dev/null; then
    [ -d "$CARRY/whl" ] || fail "gin-config/polars not importable by $PY and no $CARRY/whl: run gpu/prepare_gpu_carry.sh, carry .gpu_carry"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SCRATCH/site" "$CARRY"/whl/*.whl \
        || fail "pip could not install $CARRY/whl/*.whl for $("$PY" -V 2>&1) (wrong Python or platform tags?)"
    export PYTHONPATH="$SCRATCH/site${PYTHONPATH:+:$PYTHONPATH}"
    "$PY" -c "import gin, polars" || fail "gin-config/polars still not importable after installing $CARRY/whl"
fi

if [ "$CPU_TOY" = 1 ]; then
    DEVICE=cpu
    DEADLINE="${GPU_CHECK_SECONDS:-1800}"
    export TRITON_INTERPRET=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # the kernel in Triton's CPU interpreter
    OPS_BENCH_ARGS=(--device cpu --sizes 64 --dtypes fp32 --no-compile --warmup 1 --reps 2 --copy-mib 8)
    # Triton 3.6's interpreter takes int() of 1-element arrays, which numpy >= 2.4 refuses (later Tritons
    # squeeze first); the device compiles the kernel instead. GPU_CHECK_INTERPRETER_SITE goes first on
    # PYTHONPATH for the two interpreted steps (gpu/gpu_preflight.sh puts numpy 2.3 there).
    INTERPRETER=(env ${GPU_CHECK_INTERPRETER_SITE:+PYTHONPATH="$GPU_CHECK_INTERPRETER_SITE${PYTHONPATH:+:$PYTHONPATH}"})
    # Toy sizes on top of the fast configs (and of each sweep arm: batch, lr and warmup stay the arm's).
    # Stage 1 keeps its k-means initialisation (learning rate 1e-9: the bindings must be positive): a few
    # steps of the fast recipe collapse every item onto one code per level (seen here: usage 1%/0%/0% after
    # one step), which the tokenizer refuses.
    TOY=(--gin train.num_threads=1
         --rqvae-gin train.iterations=2 --rqvae-gin train.eval_every=2 --rqvae-gin train.checkpoint_every=2
         --rqvae-gin train.kmeans_iters=5 --rqvae-gin train.learning_rate=1e-9
         --decoder-gin train.iterations=12 --decoder-gin train.eval_every=6 --decoder-gin train.d_model=16
         --decoder-gin train.n_heads=2 --decoder-gin train.d_head=8 --decoder-gin train.ff_dim=32
         --decoder-gin train.n_encoder_layers=1 --decoder-gin train.n_decoder_layers=1
         --decoder-gin train.valid_max_users=64 --decoder-gin train.eval_batch_size=256)
    STEP_TOY=(--steps 1 --gin train.batch_size=8 --gin train.micro_batch_size=4 --gin train.max_seq_len=20
              --gin train.d_model=16 --gin train.n_heads=2 --gin train.d_head=8 --gin train.ff_dim=32)
    echo "CPU toy run (GPU_CHECK_CPU_TOY=1, gpu/gpu_preflight.sh): toy sizes, kernel under TRITON_INTERPRET=1"
else
    DEVICE=cuda
    DEADLINE="${GPU_CHECK_SECONDS:-570}"
    unset TRITON_INTERPRET  # compiled kernels on CUDA tensors, not the CPU interpreter
    OPS_BENCH_ARGS=()
    INTERPRETER=()
    TOY=()
    STEP_TOY=()
    if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "no CUDA GPU visible to $PY: this script is for a GPU machine (CPU: bash gpu/gpu_preflight.sh)" >&2
        exit 2
    fi
fi
unset TIGER_FORCE_REFERENCE  # the dispatcher must take the kernel

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
left() { local s=$((DEADLINE - SECONDS)); echo $((s > 1 ? s : 1)); }  # seconds until the last step must stop

DATA_ROOT="${TTQ_ROOT:-$CARRY/amazon}"
CACHE="$SCRATCH/gpu_check_cache"
threads_each() {  # CPU threads per process when $1 processes share the machine (at least 1)
    local n=$(($(nproc) / $1))
    echo $((n > 0 ? n : 1))
}
fresh_cache() {  # a new processed cache holding only the carried item embeddings (reported as cached)
    rm -rf "$CACHE"
    mkdir -p "$CACHE"
    [ -d "$CARRY/cache" ] && cp -r "$CARRY/cache/." "$CACHE/"
}
if [ ! -d "$DATA_ROOT/raw/beauty" ]; then
    echo "no Beauty data at $DATA_ROOT/raw/beauty (bash gpu/prepare_gpu_carry.sh, carry .gpu_carry)"
    ROWS+=("| Beauty data | MISSING at $DATA_ROOT | 0 | |")
fi

if [ "$MODE" = check ]; then
    if [ "${SKIP_OPS:-0}" != 1 ]; then
        # --- 1. kernel tests (CUDA; the toy run: the interpreter)
        step "ops tests ($DEVICE)" ops_tests.log "${INTERPRETER[@]}" "$PY" -m pytest -q -p no:cacheprovider -rs tests/ops

        # --- 2. benchmark: the table (stdout) is what goes into bench/results/residual_quantization_<card>.md
        echo "=== ops benchmark"
        start=$SECONDS
        "${INTERPRETER[@]}" "$PY" -m ops.bench "${OPS_BENCH_ARGS[@]}" --json "$OUT_DIR/ops_bench.json" \
            > "$OUT_DIR/ops_bench.md" 2> "$OUT_DIR/ops_bench.log"
        rc=$?
        cat "$OUT_DIR/ops_bench.md"
        # ops.bench keeps going when an implementation fails ("# fused ... failed"): no fused row is a failure.
        [ "$rc" -eq 0 ] || { rc_note="exit $rc"; tail -n 30 "$OUT_DIR/ops_bench.log"; }
        grep -q "| fused |" "$OUT_DIR/ops_bench.md" || rc_note="${rc_note:-no fused kernel row}"
        [ -z "${rc_note:-}" ] && status="ok" || status="FAILED ($rc_note)"
        ROWS+=("| ops benchmark | $status | $((SECONDS - start)) | ops_bench.md |")
    fi

    if [ "${SKIP_STEP:-0}" != 1 ]; then
        # --- 3. MovieLens-32M's step on synthetic full-length inputs (issues 13, 34): per example, then all
        # positions; 75 s at most each
        for name in ml32m ml32m_allpos; do
            echo "=== decoder_$name step"
            start=$SECONDS
            timeout 75 "$PY" -m bench.decoder_step "configs/decoder_$name.gin" --device "$DEVICE" --micro-batch none,config \
                --steps 5 --json "$SCRATCH/decoder_step_$name.json" "${STEP_TOY[@]}" \
                > "$SCRATCH/decoder_step_$name.md" 2> "$SCRATCH/decoder_step_$name.log"
            rc=$?
            cat "$SCRATCH/decoder_step_$name.md"
            [ "$rc" = 0 ] && status="ok" || { status="FAILED (exit $rc)"; tail -n 20 "$SCRATCH/decoder_step_$name.log"; }
            ROWS+=("| decoder_$name step | $status | $((SECONDS - start)) | summary.md |")
        done
    fi

    # --- 4. time to quality: raw Beauty -> features, stage 1, stage 2, test evaluation, timed
    # Checkpoints stay in $SCRATCH (too big to come back); the table and JSON go to the output folder.
    # TTQ_SEEDS="42 43 44" for the 3-seed mean (about 3x the time: run it alone, SKIP_OPS=1). TTQ_ARGS adds
    # arguments, e.g. TTQ_ARGS="--decoder-gin train.iterations=2000". Past TTQ_TIMEOUT seconds (default: what
    # is left of GPU_CHECK_SECONDS) the run is stopped; the log's progress bars then show the step rate.
    if [ -d "$DATA_ROOT/raw/beauty" ]; then
        TTQ_RUNS="$SCRATCH/ttq_runs"
        rm -rf "$TTQ_RUNS"
        fresh_cache
        PARALLEL=(--parallel "${TTQ_PARALLEL:-1}")
        [ "${TTQ_PARALLEL:-1}" -gt 1 ] && PARALLEL+=(--gin "train.num_threads=$(threads_each "$TTQ_PARALLEL")")
        # shellcheck disable=SC2086
        step "time to quality (Beauty, seeds ${TTQ_SEEDS:-42}, ${TTQ_PARALLEL:-1} at a time)" time_to_quality.log \
            timeout "${TTQ_TIMEOUT:-$(left)}" "$PY" -m studies.time_to_quality --root "$DATA_ROOT" --cache-dir "$CACHE" \
            --out-dir "$TTQ_RUNS" --device "$DEVICE" --seeds ${TTQ_SEEDS:-42} "${PARALLEL[@]}" \
            --rqvae-config configs/rqvae_amazon_fast.gin --decoder-config configs/decoder_amazon_fast.gin \
            "${TOY[@]}" ${TTQ_ARGS:-}
        cp "$TTQ_RUNS/time_to_quality.md" "$TTQ_RUNS/time_to_quality.json" "$OUT_DIR/" 2>/dev/null
    fi
else
    # --- the sweep: stage 1 once, every arm's stage 2 in its share of what is left (studies/sweep.py)
    if [ -d "$DATA_ROOT/raw/beauty" ]; then
        SWEEP_RUNS="$SCRATCH/sweep_runs"
        rm -rf "$SWEEP_RUNS"
        fresh_cache
        budget=$(($(left) - 40))  # the sweep's own start and the stopping of its last arm fit in the 40 s
        PARALLEL=(--parallel "${SWEEP_PARALLEL:-1}")
        [ "${SWEEP_PARALLEL:-1}" -gt 1 ] && PARALLEL+=(--decoder-gin "train.num_threads=$(threads_each "$SWEEP_PARALLEL")")
        # shellcheck disable=SC2086
        step "decoder sweep ($(grep -cv '^\s*\(#\|$\)' "${SWEEP_ARMS:-gpu/gpu_sweep_arms.txt}") arms, ${SWEEP_PARALLEL:-1} at a time, ${budget} s)" sweep_stdout.log \
            timeout "$(left)" "$PY" -m studies.sweep --root "$DATA_ROOT" --cache-dir "$CACHE" --out-dir "$SWEEP_RUNS" \
            --device "$DEVICE" --arms "${SWEEP_ARMS:-gpu/gpu_sweep_arms.txt}" --time-budget "$budget" "${PARALLEL[@]}" \
            --rqvae-config configs/rqvae_amazon_fast.gin --decoder-config configs/decoder_amazon_fast.gin \
            "${TOY[@]}" ${SWEEP_ARGS:-}
        cp "$SWEEP_RUNS/sweep.md" "$SWEEP_RUNS/sweep.json" "$SWEEP_RUNS/sweep.log" "$OUT_DIR/" 2>/dev/null
        case "${ROWS[-1]}" in  # its table is sweep.md and the runs' output sweep.log: kept only to show a failure
            *FAILED*) ;;
            *) rm -f "$OUT_DIR/sweep_stdout.log" ;;
        esac
    fi
fi

# --- summary
{
    echo "# GPU check ($MODE)"
    echo
    "$PY" -m bench.device_info --device "$DEVICE"
    [ "$CPU_TOY" = 1 ] && echo "CPU toy run (GPU_CHECK_CPU_TOY=1): a preflight of the steps, not a measurement."
    echo
    echo "| step | status | seconds | log |"
    echo "| --- | --- | ---: | --- |"
    printf '%s\n' "${ROWS[@]}"
    echo
    [ -f "$OUT_DIR/ops_tests.log" ] && echo "ops tests: $(tail -n 1 "$OUT_DIR/ops_tests.log")"
    [ -f "$OUT_DIR/ops_bench.json" ] && "$PY" - "$OUT_DIR/ops_bench.json" <<'EOF'
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
    for name in ml32m ml32m_allpos; do
        [ -s "$SCRATCH/decoder_step_$name.md" ] && { echo; cat "$SCRATCH/decoder_step_$name.md"; }
    done
    [ -s "$SCRATCH/decoder_step_ml32m.json" ] && [ -s "$SCRATCH/decoder_step_ml32m_allpos.json" ] && \
        "$PY" - "$SCRATCH/decoder_step_ml32m.json" "$SCRATCH/decoder_step_ml32m_allpos.json" <<'EOF'
import json, sys
best = [max((r["examples_per_second"] for r in json.load(open(f)) if "error" not in r), default=0.0) for f in sys.argv[1:]]
if all(best):  # issue 34's bar: all positions trains at least 20x the targets per second of per example
    print(f"\nall positions / per example, best targets/s: {best[1]:,.0f} / {best[0]:,.0f} = {best[1] / best[0]:.1f}x")
EOF
    [ -f "$OUT_DIR/time_to_quality.md" ] && { echo; cat "$OUT_DIR/time_to_quality.md"; }
    [ -f "$OUT_DIR/sweep.md" ] && { echo; cat "$OUT_DIR/sweep.md"; }
} | tee "$OUT_DIR/summary.md"
printf '%s\n' "${ROWS[@]}" | grep -q "FAILED\|MISSING" && exit 1
exit 0
