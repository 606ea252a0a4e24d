"""Synthetic face-shaped embeddings for search benchmarks at sizes no photo set reaches.

The one generator of benchmark vectors. Shaped after 128-d face embeddings of the labeled photos:

- identities have 1 to 6 faces each (uniformly), as a collection of people's photos does;
- an identity is a random direction around a shared mean direction (real embeddings are not
  centred: strangers' cosines average slightly above zero);
- a face is its identity's direction plus isotropic noise of a random strength, so that two faces
  of one person mostly meet at cosine 0.45-0.85 (5th-95th percentile about 0.50-0.78, median
  0.65) and strangers sit near 0 (median about 0.04, 99.9th percentile about 0.3).

Queries are fresh faces of identities in the collection (never indexed themselves), so every
query has at least one true match, as a search for a known person does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

FACES_PER_IDENTITY = (1, 6)
"""Fewest and most faces of one identity (each count equally likely)."""


def _unit(x: npt.NDArray[np.floating]) -> F32:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class FaceCloud:
    """A synthetic collection: unit vectors (N, D), the identity of each, and held-out queries.

    queries (Q, D) are fresh faces of identities in the collection (never indexed themselves);
    query_identity (Q,) names their identities.
    """

    vectors: F32
    identity: I64
    queries: F32
    query_identity: I64


def identity_sizes(n_faces: int, rng: np.random.Generator) -> I64:
    """Identity of each of ``n_faces`` faces: consecutive runs of 1-6 faces (FACES_PER_IDENTITY)."""
    low, high = FACES_PER_IDENTITY
    sizes = rng.integers(low, high + 1, size=n_faces // low + 1)
    return np.repeat(np.arange(sizes.size, dtype=np.int64), sizes)[:n_faces]


def face_cloud(
    n_faces: int,
    n_queries: int,
    dim: int = 128,
    seed: int = 0,
    mean_weight: float = 0.25,
    noise: tuple[float, float] = (0.45, 1.05),
) -> FaceCloud:
    """``n_faces`` unit vectors of identities with 1-6 faces each, and ``n_queries`` held-out queries.

    mean_weight: weight of the shared mean direction in each identity centre (0 = isotropic).
    noise: range of each face's noise norm relative to its unit centre (cosine to centre about
    1/sqrt(1 + noise**2)). Deterministic for a given seed.
    """
    if n_faces < 1 or n_queries < 1 or dim < 2:
        raise ValueError("face_cloud needs positive sizes and dim >= 2")
    rng = np.random.default_rng(seed)
    identity = identity_sizes(n_faces, rng)
    n_ids = int(identity[-1]) + 1
    shared = _unit(rng.standard_normal(dim))
    centres = _unit(
        rng.standard_normal((n_ids, dim)).astype(np.float32) / np.sqrt(dim) + mean_weight * shared
    )

    def faces_of(ids: I64) -> F32:
        out = np.empty((ids.size, dim), dtype=np.float32)
        step = 65536
        for start in range(0, ids.size, step):
            part = ids[start : start + step]
            scale = rng.uniform(noise[0], noise[1], size=(part.size, 1)).astype(np.float32)
            g = rng.standard_normal((part.size, dim)).astype(np.float32) / np.sqrt(dim)
            out[start : start + step] = _unit(centres[part] + scale * g)
        return out

    query_identity = rng.integers(0, n_ids, n_queries).astype(np.int64)
    return FaceCloud(faces_of(identity), identity, faces_of(query_identity), query_identity)
