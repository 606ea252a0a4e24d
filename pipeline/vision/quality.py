"""Pose, image quality and the IndexFaces/CompareFaces QualityFilter.

Pose is estimated from the 5 landmarks (no 3D model): Roll is the tilt of the eye line; Yaw
comes from the nose tip's sideways offset from the face's midline, Pitch from its height between
the eye line and the mouth line, both against a frontal face, assuming the nose tip stands half
an eye distance in front of the eyes. Signs: positive Roll turns the eye line clockwise in the
image; positive Yaw means the nose points to the image's right; positive Pitch means the face
looks up. Expect a few degrees of error near frontal, more beyond 45 degrees.

Brightness is the mean luminance of the aligned face crop scaled to 0-100. Sharpness maps the
variance of the Laplacian of the crop's luminance to 0-100 with 100 * (1 - exp(-var / 100)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from pipeline.errors import InvalidParameterException
from pipeline.types import DetectedFace, ImageQuality, Pose
from pipeline.vision.align import ARCFACE_TEMPLATE

QUALITY_LEVELS = ("NONE", "AUTO", "LOW", "MEDIUM", "HIGH")
"""Accepted QualityFilter values."""

SHARPNESS_SCALE = 100.0
"""Laplacian variance at which Sharpness is 63 (1 - 1/e)."""

TEMPLATE_NOSE_HEIGHT = float(
    (ARCFACE_TEMPLATE[2, 1] - ARCFACE_TEMPLATE[:2, 1].mean())
    / (ARCFACE_TEMPLATE[3:, 1].mean() - ARCFACE_TEMPLATE[:2, 1].mean())
)
"""Nose tip height between the eye line (0) and the mouth line (1) on the ArcFace template (0.495).
Detectors place the nose tip differently: each pack states its frontal value (YuNet: 0.57)."""
_NOSE_DEPTH = 0.5  # nose tip in front of the eye plane, in eye distances


def estimate_pose(
    landmarks: npt.NDArray[np.float32], frontal_nose_height: float = TEMPLATE_NOSE_HEIGHT
) -> Pose:
    """Roll, Yaw, Pitch in degrees from the 5 landmarks (pixels, image-left eye first).

    ``frontal_nose_height``: where this detector puts the nose tip of a frontal face, between
    the eye line (0) and the mouth line (1).
    """
    pts = landmarks.astype(np.float64)
    eye_vec = pts[1] - pts[0]
    roll = math.degrees(math.atan2(eye_vec[1], eye_vec[0]))
    # undo the roll around the eyes' midpoint so the eye line is horizontal
    c, s = math.cos(math.radians(-roll)), math.sin(math.radians(-roll))
    centre = (pts[0] + pts[1]) / 2
    rot = np.array([[c, -s], [s, c]])
    p = (pts - centre) @ rot.T
    eye_dist = max(float(np.hypot(*eye_vec)), 1e-6)
    eye_y = (p[0, 1] + p[1, 1]) / 2
    mouth_mid = (p[3] + p[4]) / 2
    midline_x = (0.0 + mouth_mid[0]) / 2
    yaw = math.degrees(math.atan2(p[2, 0] - midline_x, _NOSE_DEPTH * eye_dist))
    eye_mouth = max(mouth_mid[1] - eye_y, 1e-6)
    nose_height = (p[2, 1] - eye_y) / eye_mouth
    depth_in_eye_mouth = _NOSE_DEPTH * eye_dist / eye_mouth
    pitch = math.degrees(math.atan2(frontal_nose_height - nose_height, depth_in_eye_mouth))
    return Pose(roll=round(roll, 3), yaw=round(yaw, 3), pitch=round(pitch, 3))


def measure_quality(crop: npt.NDArray[np.uint8]) -> ImageQuality:
    """Brightness and Sharpness (0-100) of an aligned 112x112 BGR face crop."""
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    inner = gray[16:104, 16:96]  # the face itself, without the crop's borders and background
    brightness = float(inner.mean()) / 255.0 * 100.0
    variance = float(cv2.Laplacian(inner, cv2.CV_64F).var())
    sharpness = 100.0 * (1.0 - math.exp(-variance / SHARPNESS_SCALE))
    return ImageQuality(brightness=round(brightness, 3), sharpness=round(sharpness, 3))


@dataclass(frozen=True)
class QualityBar:
    """Minimums a face must meet at one QualityFilter level.

    Angles in degrees; brightness, sharpness, confidence and face quality 0-100;
    ``min_face_ratio``: the box's width and height as ratios of the image's width and height.
    """

    max_yaw: float
    max_pitch: float
    min_brightness: float
    max_brightness: float
    min_sharpness: float
    min_confidence: float
    min_face_ratio: float
    min_face_quality: float


QUALITY_BARS: dict[str, QualityBar] = {
    "LOW": QualityBar(75, 60, 8, 99, 3, 50, 0.01, 15),
    "AUTO": QualityBar(75, 60, 8, 99, 3, 50, 0.01, 15),
    "MEDIUM": QualityBar(60, 45, 15, 97, 8, 70, 0.02, 30),
    "HIGH": QualityBar(45, 30, 25, 95, 20, 85, 0.04, 45),
}
"""The bar per QualityFilter level; AUTO is LOW (lenient: it only drops faces that are plainly unusable)."""


def face_quality_score(face: DetectedFace) -> float:
    """One 0-100 score: mean of detector confidence, sharpness and how close brightness is to mid-grey."""
    exposure = 100.0 - 2.0 * abs(face.quality.brightness - 50.0)
    return (face.confidence + face.quality.sharpness + exposure) / 3.0


def quality_reasons(face: DetectedFace, level: str) -> list[str]:
    """Rekognition reasons why ``face`` fails QualityFilter ``level``; [] when it passes.

    NONE always passes. Reasons: EXTREME_POSE (|Yaw| or |Pitch| beyond the bar), LOW_BRIGHTNESS
    (too dark or blown out), LOW_SHARPNESS, LOW_CONFIDENCE (detector confidence), SMALL_BOUNDING_BOX
    (box width or height below a fraction of the image's), LOW_FACE_QUALITY (face_quality_score).
    """
    if level not in QUALITY_LEVELS:
        raise InvalidParameterException(
            f"QualityFilter must be one of {', '.join(QUALITY_LEVELS)}; got {level!r}"
        )
    if level == "NONE":
        return []
    bar = QUALITY_BARS[level]
    reasons = []
    if abs(face.pose.yaw) > bar.max_yaw or abs(face.pose.pitch) > bar.max_pitch:
        reasons.append("EXTREME_POSE")
    if not bar.min_brightness <= face.quality.brightness <= bar.max_brightness:
        reasons.append("LOW_BRIGHTNESS")
    if face.quality.sharpness < bar.min_sharpness:
        reasons.append("LOW_SHARPNESS")
    if face.confidence < bar.min_confidence:
        reasons.append("LOW_CONFIDENCE")
    if min(face.bounding_box.width, face.bounding_box.height) < bar.min_face_ratio:
        reasons.append("SMALL_BOUNDING_BOX")
    if face_quality_score(face) < bar.min_face_quality:
        reasons.append("LOW_FACE_QUALITY")
    return reasons
