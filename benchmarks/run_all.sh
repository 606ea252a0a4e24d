#!/usr/bin/env bash
# Reproduce a committed benchmark run: every `facepipe bench` suite, written to
# benchmarks/results/<date>-<provider>/ (results.json, summary.md, PNG plots, readme_section.md).
#
#   benchmarks/run_all.sh                               # CPU run, search at 10k, 100k and 1M faces
#   SEARCH_SIZES=10000,100000 benchmarks/run_all.sh     # skip 1M (about 2 GiB of memory, 2 min)
#   PROVIDER=cuda benchmarks/run_all.sh                 # GPU run (onnxruntime-gpu; falls back to CPU with a note)
#   COMPARE=benchmarks/results/<old>/results.json benchmarks/run_all.sh   # also write compare.md
#
# Environment: PROVIDER (cpu|cuda|auto), THREADS (0: each library's default), REPEAT, SEARCH_SIZES,
# SERVER_CLIENTS, SERVER_CLIENT (http|boto3), PAIRS, COMPARE, OUT. Run from anywhere with the project
# installed (pip install -e .[bench]): it uses the `facepipe` console script. The accuracy suite reads
# PAIRS (default ../shared/data/faces/pairs.csv, the labeled pairs beside this checkout, when it
# exists; without a pairs file the suite is skipped, saying so). The scripts
# benchmarks/bench_pipeline.py and benchmarks/bench_index_folder.py are run separately (README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

PROVIDER="${PROVIDER:-cpu}"
THREADS="${THREADS:-0}"
REPEAT="${REPEAT:-5}"
SEARCH_SIZES="${SEARCH_SIZES:-10000,100000,1000000}"
SERVER_CLIENTS="${SERVER_CLIENTS:-1,4,16}"
SERVER_CLIENT="${SERVER_CLIENT:-http}"
OUT="${OUT:-benchmarks/results/$(date -u +%Y-%m-%d)-${PROVIDER}}"

args=(--provider "$PROVIDER" --threads "$THREADS" --repeat "$REPEAT" --warmup 1
      --sizes "search=${SEARCH_SIZES}" --sizes "server=${SERVER_CLIENTS}"
      --server-client "$SERVER_CLIENT" --out "$OUT")
if [[ -n "${PAIRS:-}" ]]; then
  args+=(--pairs "$PAIRS")
elif [[ -f ../shared/data/faces/pairs.csv ]]; then
  args+=(--pairs ../shared/data/faces/pairs.csv)
fi
if [[ -n "${COMPARE:-}" ]]; then
  args+=(--compare "$COMPARE")
fi

facepipe bench "${args[@]}"
# README performance section from this run (the README's section markers take it)
facepipe bench --readme-section "$OUT/results.json" > "$OUT/readme_section.md"
echo "wrote $OUT"
