"""The store's records, shared by every backend: plain values, no database types.

Box values are ratios of the image size; confidences are 0-100; vectors are float32 unit vectors
of the collection's ``dim``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.types import Vector


@dataclass(frozen=True)
class CollectionRow:
    """One collection: ``id`` is the internal row id (never reused), ``name`` the CollectionId."""

    id: int
    name: str
    arn: str
    created_at: float
    model_version: str
    dim: int
    face_count: int
    user_count: int
    users_version: int


@dataclass(frozen=True)
class FaceRow:
    """One indexed face. Box values are ratios of the image size; ``confidence`` is 0-100."""

    label: int
    face_id: str
    image_id: str
    external_image_id: str | None
    box_left: float
    box_top: float
    box_width: float
    box_height: float
    confidence: float
    user_id: str | None


@dataclass(frozen=True)
class NewFace:
    """A face to insert (see ``StoreTransaction.insert_face``)."""

    face_id: str
    image_id: str
    external_image_id: str | None
    dedup_key: str
    box_left: float
    box_top: float
    box_width: float
    box_height: float
    confidence: float
    vector: Vector


@dataclass(frozen=True)
class UserRow:
    """One user with ``face_count`` associated faces (CREATED without faces, ACTIVE with)."""

    user_id: str
    created_at: float
    face_count: int


@dataclass(frozen=True)
class UserMatch:
    """A user whose centroid matched a query vector: ``cosine`` in [-1, 1]."""

    user_id: str
    face_count: int
    cosine: float


def normalized_mean(vectors: np.ndarray) -> Vector | None:
    """Unit-length mean of row vectors, or None for no rows (or a zero mean)."""
    if len(vectors) == 0:
        return None
    mean = np.asarray(vectors, dtype=np.float64).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm == 0.0:
        return None
    return (mean / norm).astype(np.float32)


def vector_to_blob(vector: Vector) -> bytes:
    """float32 little-endian bytes of a vector."""
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def blob_to_vector(blob: bytes) -> Vector:
    """The float32 vector stored by :func:`vector_to_blob`."""
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)
