#!/usr/bin/env bash
# Reproduce a committed benchmark run: every suite, written to benchmarks/results/<date>-<provider>/.
#
#   benchmarks/run_all.sh                 # CPU run at the committed (small) sizes
#   PROVIDER=cuda benchmarks/run_all.sh   # GPU run (onnxruntime-gpu; falls back to CPU with a note)
#   SEARCH_SIZES=10000,100000,1000000 benchmarks/run_all.sh   # add the 1M collection (minutes)
#
# Run from the repository root with the project installed (pip install -e .). The accuracy suite
# reads ../shared/data/faces/pairs.csv unless PAIRS names another labeled pairs file.
set -euo pipefail
cd "$(dirname "$0")/.."

PROVIDER="${PROVIDER:-cpu}"
THREADS="${THREADS:-0}"
REPEAT="${REPEAT:-5}"
SEARCH_SIZES="${SEARCH_SIZES:-10000,100000}"
OUT="${OUT:-benchmarks/results/$(date -u +%Y-%m-%d)-${PROVIDER}}"

args=(--provider "$PROVIDER" --threads "$THREADS" --repeat "$REPEAT" --warmup 1
      --sizes "search=${SEARCH_SIZES}" --out "$OUT")
if [[ -n "${PAIRS:-}" ]]; then
  args+=(--pairs "$PAIRS")
fi
if [[ -n "${COMPARE:-}" ]]; then
  args+=(--compare "$COMPARE")
fi

python -c 'import sys; from pipeline.cli.bench import bench_main; sys.exit(bench_main(sys.argv[1:]))' "${args[@]}"
# README performance section from this run (paste into README.md, or let the README build read it)
python -c 'import sys; from pipeline.cli.bench import bench_main; sys.exit(bench_main(sys.argv[1:]))' \
  --readme-section "$OUT/results.json" > "$OUT/readme_section.md"
echo "wrote $OUT"
