"""Development measurement behind pipeline.vision.dlib_align (needs dlib, which facepipe does not):
where YuNet's 5 landmarks land in dlib's chip, and how much the way the chip is made matters.

On the 112 photos of shared/data/faces with a face (celeb5/, photos/): YuNet's largest face, dlib's
5-point shape predictor run in YuNet's box, dlib's chip template (get_face_chip_details, 150 px,
padding 0.25). (1) Each face's YuNet points mapped into the chip by the similarity that dlib's
points and template give: the median per point, made left-right symmetric, is CHIP_TEMPLATE.
(2) Pair accuracy over the photos' pairs of dlib's descriptor (the converted graph) on chips made
by dlib itself, from the photo with YuNet's points, and from the 112x112 ArcFace crop (the pack's
way), alone and fused with SFace.

Usage, with dlib-bin and face-recognition-models in a separate environment (never the project's):
  PYTHONPATH=<dlib-bin dir>:<face-recognition-models dir> python benchmarks/results/2026-12-02-dlib-pack/alignment_with_dlib.py
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import cv2
import dlib
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from pipeline.config import Settings  # noqa: E402
from pipeline.vision.align import align_face, similarity_transform  # noqa: E402
from pipeline.vision.dlib_align import CHIP_TEMPLATE, chips_from_crops  # noqa: E402
from pipeline.vision.engine import get_engine  # noqa: E402
from pipeline.vision.packs import DLIB_FUSED_PACK, read_manifest, verified_file  # noqa: E402

DLIB_5_POINT = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)
"""dlib's get_face_chip_details template for its 5-point predictor (unit box, before padding)."""


def figures(cos: npt.NDArray[np.float64], same: npt.NDArray[np.bool_]) -> str:
    genuine, strangers = cos[same], np.sort(cos[~same])[::-1]
    at = {far: float((genuine > strangers[math.floor(far * strangers.size)]).mean()) for far in (1e-3, 1e-2)}
    return f"TAR at FAR 1e-3 {at[1e-3]:.4f}, at 1e-2 {at[1e-2]:.4f}"


def main() -> int:
    data = REPO.parent / "shared" / "data" / "faces"
    spec = read_manifest(DLIB_FUSED_PACK)["dlib"]
    weights = verified_file(spec["package"], spec["version"], spec["path"], spec["sha256"])
    predictor = dlib.shape_predictor(str(weights.with_name("shape_predictor_5_face_landmarks.dat")))
    template = (0.25 + DLIB_5_POINT) / 1.5 * 150
    engine = get_engine(
        Settings.from_env(model_pack=DLIB_FUSED_PACK, provider="cpu", threads=2, embedder_precision="float32")
    )
    fused = engine.stream_pack.embedder
    sface_part, dlib_part = fused.first, fused.second  # type: ignore[attr-defined]
    with (data / "labels.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["subset"] != "aligned"]
    mapped, chips, crops, ids = [], {"dlib's own": [], "from the photo": []}, [], []
    for row in rows:
        raw = (data / row["path"]).read_bytes()
        image = engine.decode(raw, max_bytes=len(raw))
        faces = engine.analyze(image, max_faces=1, embed=False)
        if not faces:
            continue
        face, w, h = faces[0], image.width, image.height
        box = face.bounding_box
        rect = dlib.rectangle(
            int(box.left * w),
            int(box.top * h),
            int((box.left + box.width) * w),
            int((box.top + box.height) * h),
        )
        rgb = np.ascontiguousarray(image.bgr[:, :, ::-1])
        shape = predictor(rgb, rect)
        parts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], np.float32)
        to_chip = similarity_transform(parts, template.astype(np.float32))
        points = np.array([[p.x * w, p.y * h] for p in face.landmarks], np.float32)
        mapped.append(points @ to_chip[:, :2].T + to_chip[:, 2])
        chips["dlib's own"].append(
            np.asarray(dlib.get_face_chip(rgb, shape, size=150, padding=0.25))[:, :, ::-1]
        )
        chips["from the photo"].append(
            cv2.warpAffine(
                image.bgr, similarity_transform(points, CHIP_TEMPLATE), (150, 150), flags=cv2.INTER_LINEAR
            )
        )
        crops.append(align_face(image.bgr, points))
        ids.append(row["identity"])
    pts = np.array(mapped)
    median = np.median(pts, axis=0)
    centre = float(np.mean([median[0, 0], median[1, 0], median[2, 0], median[3, 0], median[4, 0]]))
    eye_half, mouth_half = (median[1, 0] - median[0, 0]) / 2, (median[4, 0] - median[3, 0]) / 2
    eye_y, mouth_y = (median[0, 1] + median[1, 1]) / 2, (median[3, 1] + median[4, 1]) / 2
    symmetric = np.array(
        [
            [centre - eye_half, eye_y],
            [centre + eye_half, eye_y],
            [centre, median[2, 1]],
            [centre - mouth_half, mouth_y],
            [centre + mouth_half, mouth_y],
        ]
    )
    print(f"{len(pts)} faces; YuNet points in dlib's chip, median: {np.round(median, 2).tolist()}")
    print(f"spread (std, px): {np.round(pts.std(axis=0), 2).tolist()}")
    print(f"symmetric: {np.round(symmetric, 2).tolist()}; CHIP_TEMPLATE: {CHIP_TEMPLATE.tolist()}")
    crop_array = np.stack(crops)
    chips["from the ArcFace crop (the pack)"] = list(chips_from_crops(crop_array))
    names = np.array(ids)
    a, b = np.triu_indices(len(names), 1)
    same = names[a] == names[b]
    s = sface_part.embed(crop_array)
    cos_s = np.einsum("ij,ij->i", s[a], s[b])
    print(f"{int(same.sum())} genuine pairs, {int((~same).sum())} strangers")
    print(f"| chips | dlib alone | fused, w {fused.first_weight} |\n|---|---|---|")  # type: ignore[attr-defined]
    print(f"| (SFace alone) | {figures(cos_s, same)} | |")
    w = fused.first_weight  # type: ignore[attr-defined]
    for name, made in chips.items():
        d = dlib_part.descriptors(np.stack(made))
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
        cos_d = np.einsum("ij,ij->i", d[a], d[b])
        print(f"| {name} | {figures(cos_d, same)} | {figures(w * cos_s + (1 - w) * cos_d, same)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
