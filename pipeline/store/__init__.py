"""The durable store: SQLite (source of truth, vectors included) plus one FAISS index per collection.

    store = Store(data_dir)
    with store.write() as tx: ...            # one BEGIN IMMEDIATE transaction (see db.Tx)
    with store.read() as tx: ...             # a consistent snapshot
    store.search(coll, vector, k, min_cosine) -> [(label, cosine), ...]   best first
    store.close()

Several threads and several processes may share one data directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from pipeline.store.db import CollectionRow, Database, FaceRow, NewFace, Tx, UserRow, normalized_mean
from pipeline.store.index import DEFAULT_ANN_THRESHOLD, CollectionIndex, IndexSet

__all__ = [
    "CollectionIndex",
    "CollectionRow",
    "FaceRow",
    "NewFace",
    "Store",
    "Tx",
    "UserRow",
    "normalized_mean",
]


class Store:
    """SQLite + FAISS under ``data_dir`` (``facepipe.sqlite3`` and ``indexes/``)."""

    def __init__(self, data_dir: Path, ann_threshold: int = DEFAULT_ANN_THRESHOLD) -> None:
        self.data_dir = Path(data_dir)
        self.db = Database(self.data_dir)
        self.indexes = IndexSet(self.data_dir / "indexes", ann_threshold=ann_threshold)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read transaction (consistent snapshot)."""
        with self.db.read() as tx:
            yield tx

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """The write transaction: committed at the end of the block, rolled back on an exception."""
        with self.db.write() as tx:
            yield tx

    def index_of(self, coll: CollectionRow) -> CollectionIndex:
        """The collection's FAISS index, up to date with everything committed so far."""
        with self.indexes.lock_for(coll.id), self.read() as tx:
            return self.indexes.current(tx, coll)

    def search(
        self, coll: CollectionRow, vector: np.ndarray, k: int, min_cosine: float
    ) -> list[tuple[int, float]]:
        """Up to ``k`` (label, cosine) of the collection's faces with cosine >= min_cosine, best first."""
        with self.indexes.lock_for(coll.id):
            with self.read() as tx:
                idx = self.indexes.current(tx, coll)
            return self.indexes.search(idx, vector, k, min_cosine)

    def forget_collection(self, collection_id: int) -> None:
        """Drop a deleted collection's in-memory and on-disk index."""
        with self.indexes.lock_for(collection_id):
            self.indexes.forget(collection_id)

    def close(self) -> None:
        """Persist large indexes and close the database connections."""
        self.indexes.save_all()
        self.db.close()
