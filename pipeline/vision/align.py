"""Alignment: a 5-point similarity transform onto the ArcFace 112x112 template."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
"""Where the 5 landmarks land in a 112x112 aligned crop (x, y pixels; the image-left eye first)."""

CROP_SIZE = 112
"""Side of an aligned crop, in pixels."""


def similarity_transform(
    source: npt.NDArray[np.float32], target: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    """Least-squares similarity (rotation, uniform scale, translation) mapping source onto target.

    Umeyama's closed form; both arrays are (K, 2) points. Returns the 2x3 matrix for warpAffine.
    """
    src = source.astype(np.float64)
    dst = target.astype(np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    variance = (src_c**2).sum() / len(src)
    scale = float(np.trace(np.diag(singular) @ sign) / variance) if variance > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def align_face(bgr: npt.NDArray[np.uint8], landmarks: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """The 112x112 BGR crop of the face whose 5 landmarks (pixels, (5, 2)) are given."""
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE)
    crop = cv2.warpAffine(bgr, matrix, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR, borderValue=0.0)
    return np.asarray(crop, dtype=np.uint8)
