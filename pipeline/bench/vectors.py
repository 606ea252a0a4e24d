"""The store's vector indexes as the search suite measures them: built and searched by the store's code.

A benchmark collection is a real :class:`pipeline.store.Store` filled with synthetic vectors, so
the index it searches is the one the store itself picks at that size (exact up to the store's
ANN threshold, the quantized scan with exact re-ranking above it), and its bytes on disk are what
the store really writes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pipeline.store import CollectionRow, NewFace, Store
from pipeline.store.index import (
    DEFAULT_ANN_THRESHOLD,
    CollectionIndex,
    IndexSet,
    build_collection_index,
    faiss,
)
from pipeline.vision.calibration import SimilarityMap
from pipeline.vision.packs import read_manifest

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

Hits = list[tuple[int, float]]
"""Search results: (label, cosine) pairs, best first."""

INDEX_NAMES = {"flat": "exact", "pq": "ann"}
"""Figure-id name of each index kind."""
INDEX_LABELS = {
    "flat": "facepipe exact (flat)",
    "pq": "facepipe ANN (32-byte 4-bit PQ scan, measured candidates re-ranked exactly)",
}


def match_cosine(similarity: float = 80.0, model_pack: str = "default") -> float:
    """The cosine where the pack's calibrated Similarity equals ``similarity`` (SearchFaces' default 80)."""
    return SimilarityMap.from_manifest(read_manifest(model_pack)["calibration"]).cosine_at(similarity)


def bytes_per_face(total_bytes: int, faces: int) -> float:
    """Bytes per face of a structure holding ``faces`` faces in ``total_bytes`` bytes."""
    if faces < 1 or total_bytes < 0:
        raise ValueError(f"bytes per face needs faces >= 1 and bytes >= 0; got {total_bytes} / {faces}")
    return total_bytes / faces


def index_memory_bytes(index: CollectionIndex) -> int:
    """Bytes the FAISS index holds: the size of its serialized form (vectors, codes and ids)."""
    return len(faiss.serialize_index(index.index))


def data_dir_bytes(data_dir: Path) -> dict[str, int]:
    """Bytes on disk under a store's data directory: SQLite files (database, WAL) and index files."""
    sqlite = sum(p.stat().st_size for p in data_dir.glob("facepipe.sqlite3*") if p.is_file())
    indexes = sum(p.stat().st_size for p in (data_dir / "indexes").glob("*") if p.is_file())
    return {"sqlite": sqlite, "indexes": indexes}


@dataclass
class IndexUnderTest:
    """One collection index: its name in figure ids, a label for people, and its build time in seconds.

    used_by_store: whether the store itself searches this index at this collection size.
    """

    name: str
    label: str
    build_seconds: float
    index: CollectionIndex
    searcher: IndexSet
    used_by_store: bool

    def search(self, query: F32, k: int, min_cosine: float) -> Hits:
        """Up to ``k`` (label, cosine) hits with cosine >= min_cosine, exactly as SearchFaces asks the store."""
        return self.searcher.search(self.index, query, k, min_cosine)


@dataclass
class BenchCollection:
    """A store holding the synthetic vectors as one collection.

    labels[i] is the store's label of vectors[i]; fill_seconds the time to insert them (durable
    SQLite commits of ``FILL_BATCH`` faces).
    """

    store: Store
    collection: CollectionRow
    labels: I64
    fill_seconds: float

    def search(self, query: F32, k: int, min_cosine: float) -> Hits:
        """The store's own search: snapshot check, catch-up, then its index (as SearchFaces runs it)."""
        return self.store.search(self.collection, query, k, min_cosine)


FILL_BATCH = 20_000


def fill_store(data_dir: Path, vectors: F32, ann_threshold: int = DEFAULT_ANN_THRESHOLD) -> BenchCollection:
    """A new store under ``data_dir`` with one collection "bench" holding ``vectors`` (N, D).

    ann_threshold: the store's switch from exact to quantized search (the store's default unless a
    test needs the switch at a small size).
    """
    store = Store(data_dir, ann_threshold=ann_threshold)
    start = time.perf_counter()
    with store.write() as tx:
        coll = tx.insert_collection("bench", "arn:facepipe:bench", "bench", int(vectors.shape[1]), {})
    labels = np.empty(len(vectors), dtype=np.int64)
    for first in range(0, len(vectors), FILL_BATCH):
        with store.write() as tx:
            for i in range(first, min(first + FILL_BATCH, len(vectors))):
                face = NewFace(
                    f"face-{i}", f"image-{i}", None, f"key-{i}", 0.1, 0.1, 0.3, 0.3, 99.0, vectors[i]
                )
                labels[i] = tx.insert_face(coll, face)
    seconds = time.perf_counter() - start
    with store.read() as tx:
        coll = tx.collection("bench")
    return BenchCollection(store, coll, labels, seconds)


def store_indexes(collection: BenchCollection, vectors: F32) -> list[IndexUnderTest]:
    """The exact (flat) and ANN (quantized scan + exact re-ranking) index over the collection's vectors.

    The kind the store picks at this size is the store's own index (built by the store on first
    use, build time included); the other kind is built here the same way, with the same labels.
    """
    start = time.perf_counter()
    own = collection.store.index_of(collection.collection)
    own_seconds = time.perf_counter() - start
    searcher = IndexSet(None)
    built = []
    for kind in ("flat", "pq"):
        if kind == own.kind:
            index, seconds, used = own, own_seconds, True
        else:
            start = time.perf_counter()  # as the store builds (candidate count measured for "pq")
            index = build_collection_index(0, int(vectors.shape[1]), kind, collection.labels, vectors, 0)
            seconds, used = time.perf_counter() - start, False
        built.append(IndexUnderTest(INDEX_NAMES[kind], INDEX_LABELS[kind], seconds, index, searcher, used))
    return built
