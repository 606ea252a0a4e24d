"""Fake engines (no models) and synthetic faces: LinearEngine for the store-side semantics,
DecodingEngine for the image paths, and builders of faces and identities."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.config import DEFAULT_MAX_IMAGE_BYTES
from pipeline.service import FacePipe
from pipeline.service.faces import AnalyzedImage, index_analyzed_images
from pipeline.types import BoundingBox, DetectedFace, ImageQuality, Landmark, Pose
from pipeline.vision.image import DecodedImage, decode_image

DIM = 16


class LinearEngine:
    """Similarity = 100 * cosine clipped to 0-100; faces below detector confidence 50 fail quality."""

    model_version = "1.0"
    embedding_dim = DIM

    def decode(self, data: bytes, max_bytes: int | None = None) -> Any:
        raise AssertionError("no images in these tests")

    def analyze(self, image: Any, max_faces: int = 100, embed: bool = True) -> list[DetectedFace]:
        raise AssertionError("no images in these tests")

    def similarity(self, cosine: float) -> float:
        return float(min(100.0, max(0.0, 100.0 * cosine)))

    def cosine_at(self, similarity: float) -> float:
        return similarity / 100.0 if similarity > 0 else -1.0

    def quality_reasons(self, face: DetectedFace, level: str) -> list[str]:
        return ["LOW_CONFIDENCE"] if face.confidence < 50 else []


class DecodingEngine(LinearEngine):
    """LinearEngine with the real image decoder (the byte limit as FaceEngine.decode); finds no faces."""

    def decode(self, data: bytes, max_bytes: int | None = None) -> DecodedImage:
        return decode_image(data, DEFAULT_MAX_IMAGE_BYTES if max_bytes is None else max_bytes)

    def analyze(self, image: Any, max_faces: int = 100, embed: bool = True) -> list[DetectedFace]:
        assert isinstance(image, DecodedImage)
        return []


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def make_face(
    vector: np.ndarray, left: float = 0.1, size: float = 0.3, confidence: float = 99.0
) -> DetectedFace:
    """A detected face with the given embedding and a square box at (left, left)."""
    return DetectedFace(
        bounding_box=BoundingBox(left, left, size, size),
        landmarks=tuple(
            Landmark(t, left + size / 2, left + size / 2) for t in ("eyeLeft", "eyeRight", "nose")
        ),
        pose=Pose(0.0, 0.0, 0.0),
        quality=ImageQuality(80.0, 80.0),
        confidence=confidence,
        embedding=unit(np.asarray(vector, dtype=np.float32)),
    )


def index_vectors(fp: FacePipe, collection: str, vectors: list[np.ndarray], prefix: str = "img") -> list[str]:
    """Index one single-face image per vector; returns the FaceIds."""
    items = [AnalyzedImage(f"{prefix}{i}", 640, 480, [make_face(v)]) for i, v in enumerate(vectors)]
    responses = index_analyzed_images(fp, collection, items)
    return [r["FaceRecords"][0]["Face"]["FaceId"] for r in responses]


def person(rng: np.random.Generator, count: int, spread: float = 0.3) -> list[np.ndarray]:
    """``count`` unit vectors around one random identity direction (cosine to it about 1/sqrt(1+spread^2))."""
    center = unit(rng.normal(size=DIM))
    return [unit(center + spread * unit(rng.normal(size=DIM))) for _ in range(count)]
