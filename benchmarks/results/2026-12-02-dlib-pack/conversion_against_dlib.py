"""The converted ONNX graph against dlib's own network on the chips of every labeled image (needs
dlib, which facepipe does not: run it where dlib-bin is installed, never in the project's venv).

Chips are made as the dlib_fused pack makes them: aligned/ crops as they are, photos through YuNet
and the ArcFace alignment, then pipeline.vision.dlib_align.chips_from_crops. dlib's descriptor is
``face_recognition_model_v1.compute_face_descriptor`` of each chip; ours is the pack's graph.

Usage: PYTHONPATH=<dlib-bin dir>:<face-recognition-models dir> python benchmarks/results/2026-12-02-dlib-pack/conversion_against_dlib.py
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import cv2
import dlib
import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from pipeline.config import Settings  # noqa: E402
from pipeline.vision.align import align_face  # noqa: E402
from pipeline.vision.dlib_align import chips_from_crops  # noqa: E402
from pipeline.vision.engine import get_engine  # noqa: E402
from pipeline.vision.packs import DLIB_FUSED_PACK, read_manifest, verified_file  # noqa: E402


def main() -> int:
    data = REPO.parent / "shared" / "data" / "faces"
    engine = get_engine(
        Settings.from_env(model_pack=DLIB_FUSED_PACK, provider="cpu", threads=2, embedder_precision="float32")
    )
    with (data / "labels.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    crops = []
    for row in rows:
        raw = (data / row["path"]).read_bytes()
        if row["path"].startswith("aligned/"):
            crops.append(cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR))
            continue
        image = engine.decode(raw, max_bytes=len(raw))
        faces = engine.analyze(image, max_faces=1, embed=False)
        if faces:
            points = np.array(
                [[p.x * image.width, p.y * image.height] for p in faces[0].landmarks], np.float32
            )
            crops.append(align_face(image.bgr, points))
    chips = chips_from_crops(np.stack(crops))
    spec = read_manifest(DLIB_FUSED_PACK)["dlib"]
    model = dlib.face_recognition_model_v1(
        str(verified_file(spec["package"], spec["version"], spec["path"], spec["sha256"]))
    )
    started = time.perf_counter()
    theirs = np.array([model.compute_face_descriptor(np.ascontiguousarray(c[..., ::-1])) for c in chips])
    dlib_ms = (time.perf_counter() - started) * 1e3 / len(chips)
    started = time.perf_counter()
    ours = engine.stream_pack.embedder.second.descriptors(chips)  # type: ignore[attr-defined]
    ours_ms = (time.perf_counter() - started) * 1e3 / len(chips)
    cos = (theirs * ours).sum(1) / np.linalg.norm(theirs, axis=1) / np.linalg.norm(ours, axis=1)
    print(
        f"{len(chips)} chips: cosine to dlib's descriptors min {cos.min():.7f}, mean {cos.mean():.7f}; "
        f"max abs difference {np.abs(theirs - ours).max():.2e}; dlib {dlib_ms:.1f} ms per chip, "
        f"ONNX Runtime (one thread) {ours_ms:.1f} ms per chip"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
