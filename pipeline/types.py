"""Frozen value types shared by the vision, store and service layers.

Coordinates are ratios of the image's width (x, Left, Width) and height (y, Top, Height), as
Rekognition returns them, measured on the image after EXIF orientation is applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]
"""A face embedding: shape (D,), float32, L2-normalised (unit length)."""

LANDMARK_TYPES = ("eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight")
"""The five landmarks every detector gives, in this order (eyeLeft is on the image's left)."""

MAX_FACES_PER_IMAGE = 100
"""Faces looked at per image, the largest first (Rekognition's 100): IndexFaces, DetectFaces,
CompareFaces, the ByImage searches and the folder jobs detect at most this many."""


@dataclass(frozen=True)
class BoundingBox:
    """Face box as ratios of image width (left, width) and height (top, height)."""

    left: float
    top: float
    width: float
    height: float

    @property
    def area(self) -> float:
        """Box area as a fraction of the image area."""
        return self.width * self.height

    def to_api(self) -> dict[str, float]:
        """The Rekognition BoundingBox shape (the only place it is written)."""
        return {"Width": self.width, "Height": self.height, "Left": self.left, "Top": self.top}


@dataclass(frozen=True)
class Landmark:
    """One landmark: ``type`` from LANDMARK_TYPES; x, y as ratios of image width and height."""

    type: str
    x: float
    y: float

    def to_api(self) -> dict[str, Any]:
        return {"Type": self.type, "X": self.x, "Y": self.y}


@dataclass(frozen=True)
class Pose:
    """Head pose in degrees: roll (in-plane), yaw (left/right), pitch (up/down), each -180..180."""

    roll: float
    yaw: float
    pitch: float

    def to_api(self) -> dict[str, float]:
        return {"Roll": self.roll, "Yaw": self.yaw, "Pitch": self.pitch}


@dataclass(frozen=True)
class ImageQuality:
    """Brightness and sharpness of the face region, each 0-100 (higher is brighter/sharper)."""

    brightness: float
    sharpness: float

    def to_api(self) -> dict[str, float]:
        return {"Brightness": self.brightness, "Sharpness": self.sharpness}


@dataclass(frozen=True)
class DetectedFace:
    """One face found in an image, with its embedding when one was computed.

    ``confidence`` is the detector's confidence that this is a face, 0-100.
    ``embedding`` is a unit-length float32 vector, or None when embedding was not asked for.
    """

    bounding_box: BoundingBox
    landmarks: tuple[Landmark, ...]
    pose: Pose
    quality: ImageQuality
    confidence: float
    embedding: Vector | None = field(default=None, compare=False, repr=False)

    @property
    def area(self) -> float:
        """Box area as a fraction of the image area."""
        return self.bounding_box.area

    def to_face_detail(self) -> dict[str, Any]:
        """The Rekognition FaceDetail for Attributes=DEFAULT."""
        return {
            "BoundingBox": self.bounding_box.to_api(),
            "Landmarks": [lm.to_api() for lm in self.landmarks],
            "Pose": self.pose.to_api(),
            "Quality": self.quality.to_api(),
            "Confidence": self.confidence,
        }
