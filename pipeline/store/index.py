"""One FAISS index per collection, kept in step with SQLite through the change log.

Vectors are unit length, so inner product is cosine similarity. Which index a collection gets:

- up to ``ann_threshold`` faces (default 100,000): exact search (``IndexFlatIP``), every match found;
- above it: a scan of 4-bit product-quantized codes, one sub-quantizer per two dimensions
  (``IndexPQFastScan``, 32 bytes per 128-d face), whose best candidates are re-ranked exactly
  against the stored float vectors (``IndexRefineFlat``), so every returned score is the exact
  cosine. How many candidates are re-ranked is measured when the index is built
  (:func:`tune_candidates`: enough for 99% of the true 100 nearest neighbours of sampled faces to
  be among them), saved with the index, and scaled with the collection's size as faces are added.

Both are wrapped in ``IndexIDMap`` with the faces' int64 labels as ids. Before every search the
index applies the changes logged since it was last brought up to date, so processes sharing one
data directory always search what has been committed.

Removed faces are erased from the index, not filtered: their float vectors (the flat index, the
re-ranking store) and their quantized codes are overwritten with zeros and the index shrinks.
Only quantized indexes are saved to disk (flat ones rebuild from SQLite quickly); a saved file is
written only under the database's write lock and after catching up to its head, and every write
that deletes faces of the collection removes the file in that same lock (see :class:`Store`), so a
saved index never holds a deleted face. On PostgreSQL the saved files are local snapshots, kept
free of deleted faces as pipeline.store.postgres describes.

Why a flat scan of small codes, and not a graph or a coarse quantizer (IVF): the matches above
Similarity 80 at a million faces are mostly strangers who happen to sit just above the threshold
cosine (on face-shaped vectors, median 0.39 against a threshold of 0.37), and no partition of the
space puts them near the query: with 512 k-means cells, probing the best 62.5% of them still
missed 6% of the matches (IVF-PQ on 200k faces, 1,024 cells, 256 probed: 79% found); HNSW32
returned about half of them. Every face has to be looked at; what can shrink is the bytes per look. On 1M face-shaped
vectors (benchmarks/bench_search_scale.py, AMD EPYC Zen 4, AVX2 kernels, one core, CPU time per
query): 64-byte codes with 1,000 candidates 4.59 ms, these 32-byte codes with their measured 2,648
candidates 3.48 ms, 99.97% of the matches found; 16-byte codes found only 98% with 20,000.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss as _faiss
import numpy as np

from pipeline.store.db import Tx, blob_to_vector
from pipeline.store.files import make_private, private_directory
from pipeline.store.records import CollectionRow

PQ_CANDIDATES = 1000
"""Fewest candidates the quantized scan hands to the exact re-ranking per query (also the count of
indexes saved before candidates were measured)."""
PQ_MAX_CANDIDATES = 20_000
"""Most candidates :func:`tune_candidates` chooses (re-ranking 20,000 costs about 4 ms on one core)."""
PQ_TRAINING_SAMPLE = 65_536
"""Most vectors the product quantizer is trained on (its 16 centroids per sub-quantizer are fitted on
4,096 of them): training takes about 2 s on one core whatever the collection's size."""
TUNING_QUERIES = 64
"""Stored faces used as queries when the candidate count is measured."""
TUNING_NEIGHBOURS = 100
"""Exact nearest neighbours per tuning query the candidates must hold (SearchFaces' default MaxFaces
is 80): a threshold search returns at most these, so holding them holds its matches."""
TUNING_SHARE = 0.99
"""Share of the tuning queries' exact neighbours the chosen candidate count holds. On 1M face-shaped
vectors this finds 99.7% of the matches above Similarity 80 of fresh queries (the neighbours a
search cannot return, those below its threshold, are the hardest to rank, so the share of matches
found is higher than this)."""
DEFAULT_ANN_THRESHOLD = 100_000
"""Collections with more faces than this are searched with the quantized scan; smaller ones exactly
(exact search over 100k faces takes about 2 ms per query on one core and finds every match)."""
MIN_ANN_THRESHOLD = 16
"""Smallest ann_threshold: training 4-bit codes (16 centroids per sub-quantizer) needs 16 vectors."""

_MAGIC = b"FPIX1\n"
TEMP_PREFIX = ".tmp-"
"""Half-written index files are named TEMP_PREFIX + "collection-<id>-" + a random suffix."""
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
    candidates: int = PQ_CANDIDATES
    """Quantized only: candidates re-ranked per query at ``tuned_faces`` faces (measured at build)."""
    tuned_faces: int = 0
    """Quantized only: faces the index held when ``candidates`` was measured (0: not measured)."""
    saved: bool = False
    """Whether the index file on disk holds exactly this index (quantized indexes only)."""
    save_due: bool = False
    """A quantized index just built, to be saved for a fast open next time."""

    @property
    def live_count(self) -> int:
        """Faces in the index."""
        return int(self.index.ntotal)

    def labels(self) -> np.ndarray:
        """The labels in the index (int64, in index order)."""
        return np.asarray(faiss.vector_to_array(self.index.id_map), dtype=np.int64)

    def candidates_now(self) -> int:
        """Candidates to re-rank per query at the current size: the measured count, grown in
        proportion to the faces added since it was measured (the near-threshold faces that compete
        for the candidates grow with the collection)."""
        if self.tuned_faces <= 0 or self.live_count <= self.tuned_faces:
            return self.candidates
        return -(-self.candidates * self.live_count // self.tuned_faces)


def new_index(kind: str, dim: int, training: np.ndarray | None = None) -> Any:
    """An empty collection index for ``dim``-dimensional unit vectors, searched by inner product.

    ``kind`` "flat": exact search (faiss.IndexFlatIP). "pq": 4-bit product quantization with one
    sub-quantizer per two dimensions (faiss.IndexPQFastScan; per dimension when ``dim`` is odd) for
    the candidates, re-ranked exactly
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
    subquantizers = dim // 2 if dim % 2 == 0 else dim
    inner = faiss.IndexRefineFlat(
        # blocks of 32 faces, FAISS's default: blocks of 64 scanned 15% faster (1M faces, AVX2), but
        # FAISS 1.15's code packer misplaces codes in them, and erase() moves codes with it
        faiss.IndexPQFastScan(dim, subquantizers, 4, faiss.METRIC_INNER_PRODUCT)
    )
    # one thread: k-means on 4,096 points per sub-quantizer gains nothing from more, and OpenMP's
    # barriers on a busy machine made a 2-thread training 15x slower than a 1-thread one here
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        inner.train(np.ascontiguousarray(training, dtype=np.float32))
    finally:
        faiss.omp_set_num_threads(threads)
    return faiss.IndexIDMap(inner)


def tune_candidates(index: Any, vectors: np.ndarray, labels: np.ndarray) -> int:
    """Candidates a quantized ``index`` (new_index("pq"), holding ``vectors`` (N, dim) float32 under
    ``labels`` (N,) int64) must re-rank per query, measured on its own faces.

    TUNING_QUERIES evenly spaced stored faces are the queries; for each, its TUNING_NEIGHBOURS exact
    nearest neighbours (itself left out) are found by brute force, and their ranks in the quantized
    scan's order. The count is the TUNING_SHARE quantile of those ranks, within
    PQ_CANDIDATES..PQ_MAX_CANDIDATES (and never more than N). Took 6 s at 1M faces, 8 s at 4M (2
    busy cores), on top of about 2 s of training and 10 s per million faces added.
    """
    count = len(labels)
    if count <= PQ_CANDIDATES:
        return max(1, count)
    picks = np.linspace(0, count - 1, min(TUNING_QUERIES, count)).astype(np.int64)
    queries = np.ascontiguousarray(vectors[picks], dtype=np.float32)
    want = min(TUNING_NEIGHBOURS + 1, count)
    _, exact = faiss.knn(
        queries, np.ascontiguousarray(vectors, dtype=np.float32), want, faiss.METRIC_INNER_PRODUCT
    )
    refine = faiss.downcast_index(index.index)
    scan = min(PQ_MAX_CANDIDATES, count)
    _, approximate = refine.base_index.search(queries, scan)  # positions, as ``exact``
    ranks: list[int] = []
    for row, position in enumerate(picks.tolist()):
        order = {int(p): r for r, p in enumerate(approximate[row].tolist())}
        ranks.extend(order.get(int(p), scan) for p in exact[row].tolist() if p != position and p >= 0)
    if not ranks:
        return PQ_CANDIDATES
    needed = float(np.quantile(np.asarray(ranks, dtype=np.float64), TUNING_SHARE))
    return int(min(count, PQ_MAX_CANDIDATES, max(PQ_CANDIDATES, np.ceil(needed))))


def build_collection_index(
    collection_id: int, dim: int, kind: str, labels: np.ndarray, vectors: np.ndarray, applied_seq: int
) -> CollectionIndex:
    """A collection index of ``kind`` holding ``vectors`` (N, dim) float32 under ``labels`` (N,) int64,
    trained on a sample of them and with its candidate count measured ("pq")."""
    index = new_index(kind, dim, training_sample(vectors) if kind == "pq" else None)
    candidates = PQ_CANDIDATES
    if len(labels):
        faiss.omp_set_num_threads(BUILD_THREADS)
        try:
            index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), labels)
            if kind == "pq":
                candidates = tune_candidates(index, vectors, labels)
        finally:
            faiss.omp_set_num_threads(1)
    return CollectionIndex(
        collection_id,
        dim,
        kind,
        index,
        applied_seq,
        candidates=candidates,
        tuned_faces=len(labels) if kind == "pq" else 0,
        save_due=kind == "pq",
    )


def training_sample(vectors: np.ndarray) -> np.ndarray:
    """An evenly spaced sample of at most PQ_TRAINING_SAMPLE rows of ``vectors`` to train a "pq" index."""
    return vectors[:: max(1, -(-len(vectors) // PQ_TRAINING_SAMPLE))]


def erase(idx: CollectionIndex, labels: np.ndarray) -> int:
    """Remove ``labels`` from the index, overwriting their vectors and codes with zeros first
    (so no copy stays in the index's memory); returns how many were in it."""
    ids = idx.labels()
    positions = np.flatnonzero(np.isin(ids, labels))
    if len(positions) == 0:
        return 0
    if idx.kind == "flat":
        flat = faiss.downcast_index(idx.index.index)
        rows = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * idx.dim).reshape(flat.ntotal, idx.dim)
        rows[positions] = 0.0
        idx.index.remove_ids(faiss.IDSelectorBatch(ids[positions]))  # keeps the order of the rest
        return len(positions)
    # IndexRefineFlat has no remove_ids: move the last entry into each freed place (codes, float
    # vectors and ids alike), zero the last place, and shrink the three by one.
    refine = faiss.downcast_index(idx.index.index)
    quantized = faiss.downcast_index(refine.base_index)
    exact = faiss.downcast_index(refine.refine_index)
    packer = quantized.get_CodePacker()
    blocks = faiss.rev_swig_ptr(quantized.codes.get(), quantized.codes.size()).reshape(-1, packer.block_size)
    count = int(exact.ntotal)
    rows = faiss.rev_swig_ptr(exact.get_xb(), count * idx.dim).reshape(count, idx.dim)
    zero_code = np.zeros(packer.code_size, dtype=np.uint8)
    for position in sorted(positions.tolist(), reverse=True):
        last = count - 1
        if position != last:
            packer.pack_1(packer.unpack_1(blocks, last), position, blocks)
            rows[position] = rows[last]
            ids[position] = ids[last]
        packer.pack_1(zero_code, last, blocks)
        rows[last] = 0.0
        count -= 1
    quantized.ntotal = count
    quantized.ntotal2 = -(-count // packer.nvec) * packer.nvec  # the scan walks blocks up to ntotal2
    quantized.codes.resize(quantized.ntotal2 // packer.nvec * packer.block_size)
    exact.ntotal = count
    exact.codes.resize(count * exact.code_size)
    refine.ntotal = count
    faiss.copy_array_to_vector(np.ascontiguousarray(ids[:count]), idx.index.id_map)
    idx.index.ntotal = count
    return len(positions)


class IndexSet:
    """The per-collection indexes of one process, with their locks and optional disk copies."""

    def __init__(
        self,
        index_dir: Path | None,
        ann_threshold: int = DEFAULT_ANN_THRESHOLD,
        saved_kinds: tuple[str, ...] = ("pq",),
    ) -> None:
        """``saved_kinds``: the index kinds ``save`` writes and ``_load`` reads ("pq" for SQLite,
        whose flat indexes rebuild quickly from the file next to them; a PostgreSQL store's
        snapshots also save "flat" ones, which would otherwise be read over the network)."""
        if ann_threshold < MIN_ANN_THRESHOLD:
            raise ValueError(
                f"the ANN threshold must be at least {MIN_ANN_THRESHOLD} faces (the quantizer's "
                f"training needs that many); got {ann_threshold}"
            )
        self.index_dir = index_dir
        if index_dir is not None and index_dir.is_dir():  # files saved before the 0600 rule
            private_directory(index_dir)
            for path in index_dir.iterdir():
                make_private(path)
        self.ann_threshold = ann_threshold
        self.saved_kinds = saved_kinds
        self._indexes: dict[int, CollectionIndex] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock_for(self, collection_id: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(collection_id, threading.Lock())

    def current(self, tx: Tx, coll: CollectionRow) -> CollectionIndex:
        """The collection's index brought up to the snapshot of ``tx`` (call with lock_for held).

        A quantized index loaded from disk that had to erase faces deleted since it was saved
        (a file written before deletions removed it) has its file removed."""
        floor, head = tx.log_position(coll)
        idx = self._indexes.get(coll.id)
        if idx is None:
            idx = self._load(coll, floor, head)
        if idx is None or idx.applied_seq < floor or idx.applied_seq > head:
            idx = self._rebuild(tx, coll, head, idx)
        elif idx.applied_seq < head:
            if self._catch_up(tx, coll, idx) and idx.saved:
                self.purge_saved(coll.id)
                idx.saved = False
            if (idx.kind == "flat" and idx.live_count > self.ann_threshold) or (
                idx.kind == "pq" and idx.live_count < self.ann_threshold * 9 // 10
            ):
                idx = self._rebuild(tx, coll, head, idx)
        self._indexes[coll.id] = idx
        return idx

    def _rebuild(
        self, tx: Tx, coll: CollectionRow, head: int, old: CollectionIndex | None
    ) -> CollectionIndex:
        """A new index built from ``tx``; the ``old`` one it replaces (if any) is then zeroed, so that
        no vector it held stays in memory once it is dropped."""
        idx = self._build(tx, coll, head)
        if old is not None and old.live_count:
            erase(old, old.labels())
        return idx

    def _build(self, tx: Tx, coll: CollectionRow, head: int) -> CollectionIndex:
        labels, vectors = tx.all_vectors(coll)
        kind = "pq" if len(labels) > self.ann_threshold else "flat"
        return build_collection_index(coll.id, coll.dim, kind, labels, vectors, head)

    def _catch_up(self, tx: Tx, coll: CollectionRow, idx: CollectionIndex) -> int:
        """Apply the logged changes after idx.applied_seq; returns how many faces were erased."""
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
        erased = erase(idx, np.array(removed, dtype=np.int64)) if removed else 0
        if added:
            labels = np.fromiter(added.keys(), dtype=np.int64, count=len(added))
            idx.index.add_with_ids(np.stack(list(added.values())).astype(np.float32), labels)
        idx.applied_seq = last
        return erased

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
        candidates = idx.candidates_now()
        k_try = min(want, 64)
        while True:
            fetch = min(k_try, total)
            params = faiss.IndexRefineSearchParameters(k_factor=max(2.0, candidates / fetch))
            scores, labels = idx.index.search(q, fetch, params=params)
            hits = [(int(lab), float(s)) for s, lab in zip(scores[0], labels[0], strict=True) if lab >= 0]
            above = [h for h in hits if h[1] >= min_score]
            if len(above) < len(hits) or k_try >= want:
                return above[:k]
            k_try = min(want, k_try * 4)

    # disk copies (quantized only: flat indexes are rebuilt from SQLite quickly) -----------------
    def _path(self, collection_id: int) -> Path | None:
        return None if self.index_dir is None else self.index_dir / f"collection-{collection_id}.faiss"

    @staticmethod
    def _temp_prefix(collection_id: int) -> str:
        """The name prefix of the collection's half-written index files (and of no other's)."""
        return f"{TEMP_PREFIX}collection-{collection_id}-"

    def save(self, idx: CollectionIndex) -> None:
        """Write the index to its file (0600, atomically: a half-written file keeps TEMP_PREFIX) when
        its kind is one of ``saved_kinds``. The caller keeps deleted faces out of the file: the
        SQLite store saves while holding the database's write lock with ``idx`` caught up to the head;
        the PostgreSQL store removes a snapshot whenever it applies a deletion after the saved
        position. A folder removed meanwhile (a purge by another process) skips the save."""
        path = self._path(idx.collection_id)
        if path is None or idx.kind not in self.saved_kinds:
            return
        private_directory(path.parent)
        header = json.dumps(
            {
                "kind": idx.kind,
                "dim": idx.dim,
                "applied_seq": idx.applied_seq,
                "removed": [],
                "candidates": idx.candidates,
                "tuned_faces": idx.tuned_faces,
            }
        ).encode()
        body = faiss.serialize_index(idx.index)
        tmp = ""
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=self._temp_prefix(idx.collection_id))  # 0600
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + struct.pack("<Q", len(header)) + header)
                f.write(memoryview(body))
            os.replace(tmp, path)
        except FileNotFoundError:  # another process purged the collection's files meanwhile
            idx.save_due = False
            return
        except BaseException:
            if tmp:
                Path(tmp).unlink(missing_ok=True)
            raise
        idx.saved = True
        idx.save_due = False

    def purge_saved(self, collection_id: int) -> None:
        """Remove the collection's index file, and any half-written one a crash left behind.

        Called inside every write transaction that deletes faces of the collection (holding the
        write lock, so no save is in progress), and by catch-ups that found the file stale (without
        it: another process's save of this collection may then lose its file, see save); another
        collection's half-written files are left alone."""
        path = self._path(collection_id)
        if path is None:
            return
        path.unlink(missing_ok=True)
        if path.parent.is_dir():
            for stale in path.parent.glob(TEMP_PREFIX + "*"):
                # this collection's, and those of a facepipe that named them .tmp-<random> (mkstemp's
                # random part has no "-": no current save of another collection is taken for one)
                if (
                    stale.name.startswith(self._temp_prefix(collection_id))
                    or "-" not in stale.name[len(TEMP_PREFIX) :]
                ):
                    stale.unlink(missing_ok=True)
        idx = self._indexes.get(collection_id)
        if idx is not None:
            idx.saved = False

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
            filtered = [int(label) for label in header["removed"]]
            candidates = int(header.get("candidates", PQ_CANDIDATES))  # absent: saved before tuning
            tuned_faces = int(header.get("tuned_faces", 0))
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, struct.error):
            return None  # unreadable or tampered: rebuilt from SQLite instead
        if (
            kind not in self.saved_kinds
            or dim != coll.dim
            or not floor <= applied_seq <= head
            or candidates < 1
        ):
            return None
        idx = CollectionIndex(
            coll.id, coll.dim, kind, index, applied_seq, candidates, max(0, tuned_faces), saved=True
        )
        if filtered:  # saved by an older facepipe, which kept removed faces in the index
            erase(idx, np.array(filtered, dtype=np.int64))
            self.purge_saved(coll.id)
            idx.saved = False
        return idx

    def holds(self, collection_id: int) -> bool:
        """Whether this process holds the collection's index in memory."""
        return collection_id in self._indexes

    def cached(self) -> list[CollectionIndex]:
        """The indexes this process holds in memory."""
        return list(self._indexes.values())

    def forget(self, collection_id: int) -> None:
        """Drop a deleted collection's index from memory (zeroing it) and its file from disk."""
        idx = self._indexes.pop(collection_id, None)
        if idx is not None and idx.live_count:
            erase(idx, idx.labels())
        self.purge_saved(collection_id)
