"""Synthetic face-shaped embeddings for search benchmarks at sizes no photo set reaches.

Identities are random directions around a shared mean direction (real face embeddings are not
centred: strangers' cosines average slightly above zero); each face is its identity's direction
plus isotropic noise, so that a face's cosine to its identity centre is about 0.75-0.85, two faces
of one person meet at about 0.5-0.75 and strangers spread around 0.05 with a thin tail towards 0.4,
as real 128-d face embeddings do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


def _unit(x: npt.NDArray[np.floating]) -> F32:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class FaceCloud:
    """A synthetic collection: unit vectors (N, D), the identity of each, and held-out queries.

    queries (Q, D) are fresh faces of identities in the collection (never indexed themselves);
    query_identity (Q,) names their identities.
    """

    vectors: F32
    identity: npt.NDArray[np.int64]
    queries: F32
    query_identity: npt.NDArray[np.int64]


def face_cloud(
    n_faces: int,
    n_queries: int,
    dim: int = 128,
    faces_per_identity: int = 4,
    seed: int = 0,
    mean_weight: float = 0.25,
    noise: tuple[float, float] = (0.6, 0.95),
) -> FaceCloud:
    """``n_faces`` vectors of ``n_faces // faces_per_identity`` identities, and ``n_queries`` queries.

    mean_weight: weight of the shared mean direction in each identity centre (0 = isotropic).
    noise: range of each face's noise norm relative to its unit centre (cosine to centre about
    1/sqrt(1 + noise**2)). Deterministic for a given seed.
    """
    if n_faces < 1 or n_queries < 1 or faces_per_identity < 1 or dim < 2:
        raise ValueError("face_cloud needs positive sizes and dim >= 2")
    rng = np.random.default_rng(seed)
    n_ids = max(1, n_faces // faces_per_identity)
    shared = _unit(rng.standard_normal(dim))
    centres = _unit(
        rng.standard_normal((n_ids, dim)).astype(np.float32) / np.sqrt(dim) + mean_weight * shared / 1.0
    )

    def faces_of(ids: npt.NDArray[np.int64]) -> F32:
        out = np.empty((ids.size, dim), dtype=np.float32)
        step = 65536
        for start in range(0, ids.size, step):
            part = ids[start : start + step]
            scale = rng.uniform(noise[0], noise[1], size=(part.size, 1)).astype(np.float32)
            g = rng.standard_normal((part.size, dim)).astype(np.float32) / np.sqrt(dim)
            out[start : start + step] = _unit(centres[part] + scale * g)
        return out

    identity = np.repeat(np.arange(n_ids, dtype=np.int64), faces_per_identity)[:n_faces]
    if identity.size < n_faces:
        identity = np.r_[identity, rng.integers(0, n_ids, n_faces - identity.size)]
    query_identity = rng.integers(0, n_ids, n_queries).astype(np.int64)
    return FaceCloud(faces_of(identity), identity, faces_of(query_identity), query_identity)
