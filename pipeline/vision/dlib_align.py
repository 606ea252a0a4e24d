"""Alignment for dlib's face-recognition network: 150x150 chips made from the 112x112 ArcFace crops.

dlib aligns a face with its own 5-point shape predictor (eye corners, base of the nose) onto the
template of ``get_face_chip_details(shape, 150, 0.25)``. facepipe has YuNet's 5 points instead
(eye centres, nose tip, mouth corners), so CHIP_TEMPLATE says where those land in dlib's chip:
measured on the 112 photos of ``shared/data/faces`` (celeb5/, photos/) with a face, by mapping each
face's YuNet points through the similarity transform that dlib's predictor and template give, the
median of each point, made left-right symmetric (spread: 4.5-7.3 px per point).

Every face the engine sees is first aligned on the ArcFace template (pipeline.vision.align), and
the shared data's aligned/ faces exist only as such crops; the chip is made from that crop by one
fixed similarity transform (CROP_TO_CHIP), so photos and aligned crops take the same path. The
chip covers the crop but for its bottom ~6% (below the chin), which stays black, as the border of
an ArcFace crop does. On the 112 photos, chips made from the photo itself gave dlib alone a higher
true-accept rate than chips made from the crop, and the fused embedding the same within a few
pairs (benchmarks/results/2026-12-02-dlib-pack).
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from pipeline.vision.align import ARCFACE_TEMPLATE, CROP_SIZE, similarity_transform
from pipeline.vision.dlib_convert import CHIP_SIZE

CHIP_TEMPLATE = np.array(
    [[46.93, 45.81], [102.48, 45.81], [74.70, 78.02], [50.74, 102.26], [98.66, 102.26]],
    dtype=np.float32,
)
"""Where YuNet's 5 landmarks (image-left eye, image-right eye, nose tip, image-left and
image-right mouth corners) land in dlib's 150x150 chip with padding 0.25 (x, y pixels)."""

CROP_TO_CHIP = similarity_transform(ARCFACE_TEMPLATE, CHIP_TEMPLATE)
"""2x3 matrix from ArcFace 112x112 crop pixels to dlib chip pixels (scale about 1.58)."""


def chips_from_crops(crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """(N, 112, 112, 3) BGR crops on the ArcFace template -> (N, 150, 150, 3) BGR dlib chips."""
    if crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
        raise ValueError(f"expected (N, {CROP_SIZE}, {CROP_SIZE}, 3) crops, got {crops.shape}")
    out = np.empty((len(crops), CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
    for i, crop in enumerate(crops):
        out[i] = cv2.warpAffine(
            np.ascontiguousarray(crop), CROP_TO_CHIP, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR
        )
    return out
