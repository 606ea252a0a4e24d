#!/usr/bin/env bash
# The GPU check and benchmark in one run (under 8 minutes: DEADLINE_S), on a bare machine holding the working tree.
#
#   OUT=/tmp/gpu benchmarks/gpu_run.sh                       # GPU machine: provider cuda
#   OUT=/tmp/gpu-rehearsal PROVIDER=cpu QUICK=1 benchmarks/gpu_run.sh   # rehearsal on a CPU machine
#
# 1. install the project with onnxruntime-gpu instead of onnxruntime: in a fresh venv from the package
#    index where one is reachable, else from the parts that benchmarks/gpu_stage.sh made (STAGED=dir of
#    parts, and .gpu/parts/ in the tree) onto the machine's own python3;
# 2. says whether ONNX Runtime's CUDA provider really loads, and why not when it does not;
# 3. runs the CUDA-marked tests (tests/cuda: CUDA is the provider used, CUDA embeddings and detections
#    agree with the CPU's);
# 4. `facepipe bench --provider $PROVIDER`: the pipeline suite (embedding batches up to 256, detection
#    up to 640x640) and the search suite at 1M faces (FAISS on CPU), sampling GPU memory meanwhile;
# 5. `facepipe index-folder` on a folder of photos ($PHOTOS; default ../shared/data/faces, else
#    .gpu/photos), timed;
# and writes everything under $OUT: bench/ (results.json, summary.md, plots, readme_section.md),
# log.txt, summary.txt, and gpu_run.tar.gz holding all of it (for tools that fetch few files).
#
# Environment: OUT (default benchmarks/results/tmp/gpu), PROVIDER (cuda|cpu, default cuda), QUICK=1
# (tiny sizes), ORT_GPU (1: onnxruntime-gpu; default 1 with PROVIDER=cuda), PYTHON (default python3),
# VENV (default /tmp/facepipe-gpu-venv), INSTALL (index|staged; default: index when one answers),
# STAGED (folder of staged parts), PHOTOS, DEADLINE_S (default 470: seconds for the whole run).
# Every step has its own time limit, cut to what is left of DEADLINE_S (less 20 s for the summary and
# the tarball); a failed or cut step is logged and the run goes on. The summary and the tarball are
# written on any exit (an EXIT trap), and the GPU memory sampler is stopped there.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

OUT="${OUT:-benchmarks/results/tmp/gpu}"
PROVIDER="${PROVIDER:-cuda}"
QUICK="${QUICK:-0}"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-/tmp/facepipe-gpu-venv}"
STAGED="${STAGED:-}"
mkdir -p "$OUT/bench"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/log.txt"
SUMMARY="$OUT/summary.txt"
: >"$LOG"
: >"$SUMMARY"
START=$(date +%s)
DEADLINE_S="${DEADLINE_S:-470}"
# FINISH_S: seconds kept back from every step for the summary and the tarball
FINISH_S=20

say() { echo "[$(($(date +%s) - START))s] $*" | tee -a "$LOG" "$SUMMARY"; }
# within SECONDS: SECONDS, or less when the deadline is nearer (what is left less FINISH_S), at least 1
# (timeout 0 would mean no limit)
within() {
  local left=$((DEADLINE_S - ($(date +%s) - START) - FINISH_S))
  if ((left < 1)); then left=1; fi
  echo $(($1 < left ? $1 : left))
}
# step NAME SECONDS COMMAND...: run with a time limit (cut to the deadline), output to the log, status
# to the summary; COMMAND may be a function of this script (it runs in a child bash with the exported
# variables, its arguments quoted as given and pipefail on)
step() {
  local name=$1 limit
  limit=$(within "$2")
  shift 2
  if ((limit <= 1)); then
    say "== $name skipped: the ${DEADLINE_S}s deadline is reached"
    return 124
  fi
  say "== $name (limit ${limit}s)"
  # in the background, waited for: a TERM to this script runs its traps at once (timeout passes the
  # signal on to the command)
  if declare -F "$1" >/dev/null; then
    timeout --kill-after=5 "$limit" bash -o pipefail -c "$(declare -f "$1"); \"\$@\"" _ "$@" >>"$LOG" 2>&1 &
  else
    timeout --kill-after=5 "$limit" "$@" >>"$LOG" 2>&1 &
  fi
  STEP_PID=$!
  wait "$STEP_PID"
  local rc=$?
  STEP_PID=""
  say "   $name: exit $rc"
  return $rc
}

SAMPLER=""
STEP_PID=""
FINISHED=0
# finish: stop the GPU memory sampler, then the summary, the tarball and the summary on stdout; on
# any exit, once
finish() {
  if [[ "$FINISHED" == 1 ]]; then return; fi
  FINISHED=1
  if [[ -n "$STEP_PID" ]]; then
    kill "$STEP_PID" 2>/dev/null
    wait "$STEP_PID" 2>/dev/null
    say "stopped: the run was interrupted"
  fi
  if [[ -n "$SAMPLER" ]]; then
    kill "$SAMPLER" 2>/dev/null
    wait "$SAMPLER" 2>/dev/null
    say "peak GPU memory used: $(sort -n "$OUT/gpu_memory_mib.csv" 2>/dev/null | tail -1) MiB (nvidia-smi, whole device, every 200 ms)"
  fi
  if [[ -f "$OUT/bench/summary.md" ]]; then
    grep -E "^\| (embed|detect|end to end)" "$OUT/bench/summary.md" | head -40 >>"$SUMMARY"
  fi
  say "done in $(($(date +%s) - START)) s"
  tar -C "$OUT" -czf /tmp/gpu_run.tar.gz --exclude gpu_run.tar.gz . && mv /tmp/gpu_run.tar.gz "$OUT/"
  cat "$SUMMARY"
}
trap finish EXIT
trap 'exit 143' TERM INT

if [[ "$QUICK" == 1 ]]; then
  PIPELINE_SIZES="1,8"
  SEARCH_SIZES="10000"
  BENCH_EXTRA=(--quick)
else
  PIPELINE_SIZES="1,8,32,64,128,256"
  SEARCH_SIZES="1000000"
  BENCH_EXTRA=(--repeat 5)
fi

say "facepipe GPU run: provider $PROVIDER, quick $QUICK, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
{
  echo "== machine"
  uname -a
  lscpu 2>/dev/null | grep -E 'Model name|^CPU\(s\)' || true
  timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || echo "no nvidia-smi"
  timeout 20 "$PYTHON" --version
} >>"$LOG" 2>&1

# --- 1. install -------------------------------------------------------------------------------------
# With a package index: a fresh venv, the project, and onnxruntime-gpu in place of onnxruntime
# (ORT_GPU=1, the default with PROVIDER=cuda). Without one: the machine's own python3 (a GPU image's
# numpy, onnx and opencv serve) with the staged site on PYTHONPATH and the project installed into it.
ORT_GPU="${ORT_GPU:-$([[ "$PROVIDER" == cuda ]] && echo 1 || echo 0)}"
SITE=/tmp/facepipe-gpu-site
export ROOT PYTHON VENV ORT_GPU SITE STAGED
install_from_index() {
  # onnxruntime-gpu is the same module as the onnxruntime dependency: swap the packages, without
  # letting pip bring the CPU one back (their own dependencies are the same)
  rm -rf "$VENV" && "$PYTHON" -m venv "$VENV" &&
    "$VENV/bin/python" -m pip install -q -e "$ROOT" pytest &&
    "$VENV/bin/python" -m pip install -q --no-deps insightface &&
    if [[ "$ORT_GPU" == 1 ]]; then
      "$VENV/bin/python" -m pip uninstall -q -y onnxruntime &&
        "$VENV/bin/python" -m pip install -q --no-deps "onnxruntime-gpu>=1.31"
    fi
}
install_from_parts() {
  local parts=${STAGED:-/tmp/facepipe-gpu-parts}
  mkdir -p "$parts"
  if [[ -d .gpu/parts ]]; then cp -n .gpu/parts/* "$parts"/ 2>/dev/null || true; fi
  if ! ls "$parts"/site.tar.xz.part-* >/dev/null 2>&1; then
    echo "no staged parts in $parts or .gpu/parts: run benchmarks/gpu_stage.sh where a package index is reachable"
    return 1
  fi
  rm -rf "$SITE" && mkdir -p "$SITE" &&
    cat "$parts"/site.tar.xz.part-* | xz -d | tar -x -C "$SITE" --strip-components=1 &&
    PYTHONPATH="$SITE" "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation --target "$SITE" "$ROOT"
}
INSTALL="${INSTALL:-auto}"
if [[ "$INSTALL" == auto ]]; then
  if timeout "$(within 20)" "$PYTHON" -m pip download -q --retries 0 --timeout 5 --no-deps -d /tmp/facepipe-probe platformdirs >/dev/null 2>&1; then
    INSTALL=index
  else
    INSTALL=staged
  fi
fi
if [[ "$INSTALL" == index ]]; then
  say "package index reachable: venv $VENV, onnxruntime-gpu $([[ "$ORT_GPU" == 1 ]] && echo yes || echo no)"
  step install 300 install_from_index || say "install failed: see log.txt"
  PY="$VENV/bin/python"
  BIN="$VENV/bin"
else
  say "no package index: the staged site in $SITE"
  step install 300 install_from_parts || say "install failed: see log.txt"
  export PYTHONPATH="$SITE"
  PY="$PYTHON"
  BIN="$SITE/bin"
fi
# the console script's own entry point (pip --target leaves no bin/ script beside the staged packages);
# -P: the installed package, not the source tree in the current directory
FACEPIPE=(env PATH="$BIN:$PATH" FACEPIPE_PROVIDER="$PROVIDER" "$PY" -P -m pipeline.cli.main)
export FACEPIPE_CACHE=/tmp/facepipe-gpu-cache

# --- 2. does CUDA load? -------------------------------------------------------------------------------
timeout --kill-after=5 "$(within 60)" "$PY" - >>"$SUMMARY" 2>>"$LOG" <<'EOF' || say "CUDA load check failed or timed out: see log.txt"
import onnxruntime as ort
from pipeline.vision.providers import cuda_load_error
reason = cuda_load_error()
print(f"onnxruntime {ort.__version__}, providers {ort.get_available_providers()}")
print("CUDA provider loads" if reason is None else f"CUDA provider does NOT load: {reason}")
EOF

# --- 3. CUDA-marked tests -------------------------------------------------------------------------------
photos_dir() {
  for d in "${PHOTOS:-}" ../shared/data/faces .gpu/photos; do
    if [[ -n "$d" && -d "$d" ]]; then echo "$d"; return; fi
  done
}
PHOTOS_DIR=$(photos_dir)
step "cuda tests" 180 "$PY" -m pytest -q -rs -m cuda tests/cuda -p no:cacheprovider
grep -E "passed|failed|skipped|error" "$LOG" | tail -3 >>"$SUMMARY"

# --- 4. benchmark, with GPU memory sampled ------------------------------------------------------------
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$OUT/gpu_memory_mib.csv" 2>/dev/null &
  SAMPLER=$!
fi
step "bench pipeline+search" 330 "${FACEPIPE[@]}" bench --provider "$PROVIDER" --threads 0 --warmup 1 \
  "${BENCH_EXTRA[@]}" --suite pipeline --suite search \
  --sizes "pipeline=$PIPELINE_SIZES" --sizes "search=$SEARCH_SIZES" --out "$OUT/bench"
timeout --kill-after=5 "$(within 60)" "${FACEPIPE[@]}" bench --readme-section "$OUT/bench/results.json" \
  >"$OUT/bench/readme_section.md" 2>>"$LOG" || say "bench --readme-section failed or timed out: see log.txt"

# --- 5. index-folder -------------------------------------------------------------------------------------
if [[ -n "$PHOTOS_DIR" ]]; then
  DATA=$(mktemp -d)
  t0=$(date +%s%N)
  step "index-folder $PHOTOS_DIR" 120 "${FACEPIPE[@]}" index-folder "$PHOTOS_DIR" --recursive \
    --collection-id gpu --create-collection --data-dir "$DATA" --quiet --report "$OUT/index_folder.jsonl"
  ms=$((($(date +%s%N) - t0) / 1000000))
  images=0
  if [[ -f "$OUT/index_folder.jsonl" ]]; then images=$(wc -l <"$OUT/index_folder.jsonl"); fi
  say "   index-folder: $images images in $ms ms, start-up and model load included"
  rm -rf "$DATA"
else
  say "index-folder skipped: no photos (set PHOTOS, or stage .gpu/photos with benchmarks/gpu_stage.sh)"
fi

finish
