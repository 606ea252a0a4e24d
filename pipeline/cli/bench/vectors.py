"""The store's vector indexes as the search suite measures them: built and searched by the store's code."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.store.index import HNSW_EF_SEARCH, HNSW_M, CollectionIndex, IndexSet, new_index
from pipeline.vision.calibration import SimilarityMap
from pipeline.vision.packs import read_manifest

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

Hits = list[tuple[int, float]]
"""Search results: (label, cosine) pairs, best first."""


def match_cosine(similarity: float = 80.0, model_pack: str = "default") -> float:
    """The cosine where the pack's calibrated Similarity equals ``similarity`` (SearchFaces' default 80)."""
    return SimilarityMap.from_manifest(read_manifest(model_pack)["calibration"]).cosine_at(similarity)


@dataclass
class IndexUnderTest:
    """One collection index: its name in figure ids, a label for people, and its build time in seconds."""

    name: str
    label: str
    build_seconds: float
    index: CollectionIndex
    searcher: IndexSet

    def search(self, query: F32, k: int, min_cosine: float) -> Hits:
        """Up to ``k`` (label, cosine) hits with cosine >= min_cosine, exactly as SearchFaces asks the store."""
        return self.searcher.search(self.index, query, k, min_cosine)


def store_indexes(vectors: F32, labels: I64) -> list[IndexUnderTest]:
    """The store's exact (flat) and ANN (HNSW) index over ``vectors`` with int64 ``labels``."""
    searcher = IndexSet(None)
    built = []
    for kind, name, label in (
        ("flat", "exact", "facepipe exact (flat)"),
        ("hnsw", "ann", f"facepipe ANN (HNSW M={HNSW_M}, efSearch>={HNSW_EF_SEARCH})"),
    ):
        start = time.perf_counter()
        index = new_index(kind, vectors.shape[1])
        index.add_with_ids(vectors, labels)
        seconds = time.perf_counter() - start
        built.append(
            IndexUnderTest(
                name, label, seconds, CollectionIndex(0, vectors.shape[1], kind, index, 0), searcher
            )
        )
    return built
