"""One FAISS index per collection, kept in step with SQLite through the change log.

Vectors are unit length, so inner product is cosine similarity. A collection's index is exact
(``IndexFlatIP``) up to ``ann_threshold`` faces; above it, a scan of 4-bit product-quantized codes
(``IndexPQFastScan``, one sub-quantizer per dimension) picks candidates that are then re-ranked
exactly against the stored vectors (``IndexRefineFlat``). Both are wrapped in ``IndexIDMap`` with the
faces' int64 labels as ids. Removed faces are taken out of the flat index and filtered out of the
quantized index's results (it is rebuilt once a tenth of it is removed). Before every search the
index applies the changes logged since it was last brought up to date, so processes sharing one
data directory always search what has been committed.

Why a quantized scan and not a graph: face embeddings are high-dimensional and their matches sit
only moderately closer than strangers, which is where graph indexes lose their way. On 1M
face-shaped vectors, HNSW32 (efConstruction 240, efSearch 192) returned about half of the matches
above Similarity 80 that exact search returns (recall@10 70%) in 1.7 ms; the quantized scan with
1,000 re-ranked candidates returns all of them in about 3 ms on one core, at about 580 bytes per
face, and builds in seconds instead of minutes.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss as _faiss
import numpy as np

from pipeline.store.db import CollectionRow, Tx, blob_to_vector

PQ_CANDIDATES = 1000
"""Fewest candidates the quantized scan hands to the exact re-ranking per query. On 1M face-shaped
vectors: 1,000 candidates find 99.97% of the matches above Similarity 80 (2,000: 100%), about 3 ms
per query on one core."""
PQ_TRAINING_SAMPLE = 200_000
"""Most vectors the product quantizer is trained on when the index is built."""
DEFAULT_ANN_THRESHOLD = 100_000
"""Collections with more faces than this are searched with the quantized scan; smaller ones exactly
(exact search over 100k faces takes about 2 ms per query on one core and finds every match)."""

_MAGIC = b"FPIX1\n"
BUILD_THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
"""OpenMP threads for building an index; searches use one (a single query gains nothing from
more, and spinning OpenMP threads next to ONNX Runtime's made one query 100x slower here)."""
faiss: Any = _faiss
"""FAISS, untyped here: its stubs do not describe the numpy-friendly Python wrappers."""


@dataclass
class CollectionIndex:
    """The FAISS index of one collection and the change-log position it reflects."""

    collection_id: int
    dim: int
    kind: str  # "flat" or "pq"
    index: Any
    """faiss.IndexIDMap over IndexFlatIP, or over IndexRefineFlat(IndexPQFastScan)."""
    applied_seq: int
    removed: set[int] = field(default_factory=set)
    """Labels removed from a quantized index but still in it (filtered at search time)."""

    @property
    def live_count(self) -> int:
        return int(self.index.ntotal) - len(self.removed)


def new_index(kind: str, dim: int, training: np.ndarray | None = None) -> Any:
    """An empty collection index for ``dim``-dimensional unit vectors, searched by inner product.

    ``kind`` "flat": exact search (faiss.IndexFlatIP). "pq": 4-bit product quantization with one
    sub-quantizer per dimension (faiss.IndexPQFastScan) for the candidates, re-ranked exactly
    (faiss.IndexRefineFlat, which keeps the float vectors); it is trained on ``training``
    ((N, dim) float32, required for "pq"). Both are wrapped in faiss.IndexIDMap: add vectors with
    ``add_with_ids(vectors (N, dim) float32, labels (N,) int64)``.
    """
    if kind == "flat":
        return faiss.IndexIDMap(faiss.IndexFlatIP(dim))
    if kind != "pq":
        raise ValueError(f"index kind must be 'flat' or 'pq'; got {kind!r}")
    if training is None or len(training) == 0:
        raise ValueError("a 'pq' index needs training vectors")
    inner = faiss.IndexRefineFlat(faiss.IndexPQFastScan(dim, dim, 4, faiss.METRIC_INNER_PRODUCT))
    inner.train(np.ascontiguousarray(training, dtype=np.float32))
    return faiss.IndexIDMap(inner)


def training_sample(vectors: np.ndarray) -> np.ndarray:
    """An evenly spaced sample of at most PQ_TRAINING_SAMPLE rows of ``vectors`` to train a "pq" index."""
    return vectors[:: max(1, len(vectors) // PQ_TRAINING_SAMPLE)]


class IndexSet:
    """The per-collection indexes of one process, with their locks and optional disk copies."""

    def __init__(self, index_dir: Path | None, ann_threshold: int = DEFAULT_ANN_THRESHOLD) -> None:
        self.index_dir = index_dir
        self.ann_threshold = ann_threshold
        self._indexes: dict[int, CollectionIndex] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock_for(self, collection_id: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(collection_id, threading.Lock())

    def current(self, tx: Tx, coll: CollectionRow) -> CollectionIndex:
        """The collection's index brought up to the snapshot of ``tx`` (call with lock_for held)."""
        floor, head = tx.log_position(coll)
        idx = self._indexes.get(coll.id)
        if idx is None:
            idx = self._load(coll, floor, head)
        if idx is None or idx.applied_seq < floor or idx.applied_seq > head:
            idx = self._build(tx, coll, head)
        elif idx.applied_seq < head:
            self._catch_up(tx, coll, idx)
            if (idx.kind == "flat" and idx.live_count > self.ann_threshold) or (
                idx.kind == "pq" and len(idx.removed) > max(1000, idx.index.ntotal // 10)
            ):
                idx = self._build(tx, coll, head)
        self._indexes[coll.id] = idx
        return idx

    def _build(self, tx: Tx, coll: CollectionRow, head: int) -> CollectionIndex:
        labels, vectors = tx.all_vectors(coll)
        kind = "pq" if len(labels) > self.ann_threshold else "flat"
        index = new_index(kind, coll.dim, training_sample(vectors) if kind == "pq" else None)
        if len(labels):
            faiss.omp_set_num_threads(BUILD_THREADS)
            try:
                index.add_with_ids(vectors, labels)
            finally:
                faiss.omp_set_num_threads(1)
        idx = CollectionIndex(coll.id, coll.dim, kind, index, head)
        if kind == "pq":
            self._save(idx)
        return idx

    def _catch_up(self, tx: Tx, coll: CollectionRow, idx: CollectionIndex) -> None:
        added: dict[int, np.ndarray] = {}
        removed: list[int] = []
        never_held: set[int] = set()  # added and already deleted in this snapshot: not in the index
        last = idx.applied_seq
        for seq, label, was_added, blob in tx.changes_since(coll, idx.applied_seq):
            last = seq
            if was_added:
                if blob is not None:
                    added[label] = blob_to_vector(blob)
                else:
                    never_held.add(label)
            elif label in added:
                del added[label]
            elif label in never_held:
                never_held.discard(label)
            else:
                removed.append(label)
        if removed:
            if idx.kind == "flat":
                idx.index.remove_ids(np.array(removed, dtype=np.int64))
            else:
                idx.removed.update(removed)
        if added:
            labels = np.fromiter(added.keys(), dtype=np.int64, count=len(added))
            idx.index.add_with_ids(np.stack(list(added.values())).astype(np.float32), labels)
        idx.applied_seq = last

    def search(
        self, idx: CollectionIndex, query: np.ndarray, k: int, min_score: float
    ) -> list[tuple[int, float]]:
        """Up to ``k`` (label, cosine) pairs with cosine >= min_score, best first."""
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, idx.dim)
        total = idx.live_count
        if total <= 0 or k <= 0:
            return []
        faiss.omp_set_num_threads(1)
        if idx.kind == "flat":
            lims, scores, labels = idx.index.range_search(
                q, float(np.nextafter(np.float32(min_score), -np.inf))
            )
            order = np.argsort(-scores[lims[0] : lims[1]], kind="stable")[:k]
            return [(int(labels[i]), float(scores[i])) for i in order if scores[i] >= min_score]
        want = min(k, total)
        k_try = min(want, 64)
        while True:
            fetch = min(k_try + len(idx.removed), int(idx.index.ntotal))
            params = faiss.IndexRefineSearchParameters(k_factor=max(2.0, PQ_CANDIDATES / fetch))
            scores, labels = idx.index.search(q, fetch, params=params)
            hits = [
                (int(lab), float(s))
                for s, lab in zip(scores[0], labels[0], strict=True)
                if lab >= 0 and int(lab) not in idx.removed
            ][:k_try]
            above = [h for h in hits if h[1] >= min_score]
            if len(above) < len(hits) or k_try >= want:
                return above[:k]
            k_try = min(want, k_try * 4)

    # disk copies (quantized only: flat indexes are rebuilt from SQLite quickly) -----------------
    def _path(self, collection_id: int) -> Path | None:
        return None if self.index_dir is None else self.index_dir / f"collection-{collection_id}.faiss"

    def _save(self, idx: CollectionIndex) -> None:
        path = self._path(idx.collection_id)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        header = json.dumps(
            {"kind": idx.kind, "dim": idx.dim, "applied_seq": idx.applied_seq, "removed": sorted(idx.removed)}
        ).encode()
        body = faiss.serialize_index(idx.index).tobytes()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC + struct.pack("<Q", len(header)) + header + body)
        os.replace(tmp, path)

    def _load(self, coll: CollectionRow, floor: int, head: int) -> CollectionIndex | None:
        path = self._path(coll.id)
        if path is None or not path.is_file():
            return None
        try:
            data = path.read_bytes()
            if not data.startswith(_MAGIC):
                return None
            (size,) = struct.unpack_from("<Q", data, len(_MAGIC))
            start = len(_MAGIC) + 8
            header = json.loads(data[start : start + size])
            index = faiss.deserialize_index(np.frombuffer(data[start + size :], dtype=np.uint8))
            kind, dim, applied_seq = str(header["kind"]), int(header["dim"]), int(header["applied_seq"])
            removed = {int(label) for label in header["removed"]}
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, struct.error):
            return None  # unreadable or tampered: rebuilt from SQLite instead
        if kind != "pq" or dim != coll.dim or not floor <= applied_seq <= head:
            return None
        return CollectionIndex(coll.id, coll.dim, kind, index, applied_seq, removed)

    def save_all(self) -> None:
        """Write every quantized index to disk (for a fast open next time)."""
        for idx in list(self._indexes.values()):
            if idx.kind == "pq":
                with self.lock_for(idx.collection_id):
                    self._save(idx)

    def forget(self, collection_id: int) -> None:
        """Drop a deleted collection's index from memory and disk."""
        self._indexes.pop(collection_id, None)
        path = self._path(collection_id)
        if path is not None:
            path.unlink(missing_ok=True)
