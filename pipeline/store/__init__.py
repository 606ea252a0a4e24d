"""The durable store: SQLite (source of truth, vectors included) plus one FAISS index per collection.

    store = Store(data_dir)
    with store.write() as tx: ...            # one BEGIN IMMEDIATE transaction (see db.Tx)
    with store.read() as tx: ...             # a consistent snapshot
    store.search(coll, vector, k, min_cosine) -> [(label, cosine), ...]   best first
    store.match_users(coll, vector, min_cosine, limit, exclude) -> [UserMatch, ...]
    store.close()

``Store`` is the SQLite backend of pipeline.store.interface.FaceStore, the contract the service
uses; ``Tx`` here names that contract's transaction (StoreTransaction). Several threads and
several processes may share one data directory.

Erasure: when a ``write()`` block that deleted faces, users or a collection has returned, the
deleted vectors and centroids are gone from the data directory (secure_delete, the write-ahead log
checkpointed and truncated, the collection's saved index file removed) and from this process's
indexes and caches (indexes erase them in place; the centroid cache entry is dropped). Other
processes sharing the directory drop theirs at their next operation on that collection.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from pipeline.config import Settings
from pipeline.errors import InternalServerError
from pipeline.store import db
from pipeline.store.db import Database
from pipeline.store.index import DEFAULT_ANN_THRESHOLD, CollectionIndex, IndexSet
from pipeline.store.interface import FaceStore, StoreTransaction
from pipeline.store.records import CollectionRow, FaceRow, NewFace, UserMatch, UserRow, normalized_mean

Tx = StoreTransaction
"""The transaction the service sees (the interface; the SQLite one is pipeline.store.db.Tx)."""

__all__ = [
    "CollectionIndex",
    "CollectionRow",
    "FaceRow",
    "FaceStore",
    "IndexedStore",
    "NewFace",
    "Store",
    "StoreTransaction",
    "Tx",
    "UserMatch",
    "UserRow",
    "normalized_mean",
    "open_store",
]

_UserCentroids = tuple[int, list[str], list[int], np.ndarray]
"""(users_version, user ids, face counts, centroids (U, D)) of one collection."""
SNAPSHOT_DIRNAME = "snapshots"
"""Folder of a data directory holding a PostgreSQL store's local index snapshots."""
_EVERY_COLLECTION = -1
"""The erasure-epoch key bumped when every collection's centroids are dropped (ids are positive)."""


class _Database(Protocol):
    """What IndexedStore needs of a backend's database (db.Database, postgres.PostgresDatabase)."""

    def read(self) -> AbstractContextManager[db.Tx]: ...

    def write(self) -> AbstractContextManager[db.Tx]: ...

    def erase_log(self) -> None: ...

    def reclaim_space(self) -> None: ...

    @property
    def durability(self) -> str: ...

    def close(self) -> None: ...


class IndexedStore:
    """A FaceStore on any backend's database: the FAISS index per collection in this process, the
    cached user centroids, and erasure after deleting writes. The backends subclass it: :class:`Store`
    (SQLite) and pipeline.store.postgres.PostgresStore, each adding only what its database differs in.
    """

    def __init__(self, database: _Database, indexes: IndexSet) -> None:
        self.db = database
        self.indexes = indexes
        self._centroids: dict[int, _UserCentroids] = {}
        self._centroids_lock = threading.Lock()
        self._erasure_epochs: dict[int, int] = {}
        """Per collection: how many times its cached centroids were dropped (under _centroids_lock)."""

    @contextmanager
    def read(self) -> Iterator[db.Tx]:
        """A read transaction (consistent snapshot)."""
        with self.db.read() as tx:
            yield tx

    @contextmanager
    def write(self) -> Iterator[db.Tx]:
        """The write transaction: committed at the end of the block, rolled back on an exception.

        A transaction that deleted anything is erased before this returns (see the module
        docstring): this process's copies are dropped, then the backend's database erases what it
        can (SQLite: a WAL checkpoint, and after DeleteCollection giving the free pages back to the
        file system; PostgreSQL: VACUUM)."""
        with self.db.write() as tx:
            yield tx
            # SQLite: inside the write lock, so no index file can be saved between this and the
            # commit. PostgreSQL's snapshots are saved without the row lock: a file saved meanwhile
            # is removed by _erase_in_memory's catch-up (this process) or the notification (others).
            for collection_id in tx.deleted_faces | tx.deleted_collections:
                self.indexes.purge_saved(collection_id)
        if tx.erases:
            try:
                self._erase_in_memory(tx)
            except InternalServerError as exc:  # e.g. the database unreachable right after the commit
                self._erase_in_database(tx)
                raise InternalServerError(
                    f"the deletion is committed, but this process could not drop its copies "
                    f"({exc.message}); its next operation on the collection drops them"
                ) from exc
            self._erase_in_database(tx)

    def _erase_in_database(self, tx: db.Tx) -> None:
        """Have the backend's database erase what ``tx`` deleted (it has committed)."""
        if tx.deleted_collections:
            self.db.reclaim_space()
        self.db.erase_log()

    def _erase_in_memory(self, tx: db.Tx) -> None:
        """Drop this process's copies of what ``tx`` deleted (it has committed)."""
        for collection_id in tx.deleted_users | tx.deleted_collections:
            self._drop_centroids(collection_id)
        for collection_id in tx.deleted_collections:
            with self.indexes.lock_for(collection_id):
                self.indexes.forget(collection_id)
        for collection_id in tx.deleted_faces - tx.deleted_collections:
            with self.indexes.lock_for(collection_id), self.read() as rtx:
                coll = rtx.find_collection_by_id(collection_id)
                if coll is not None and self.indexes.holds(collection_id):
                    self.indexes.current(rtx, coll)  # applies the removals: erases them

    def _drop_centroids(self, collection_id: int | None) -> None:
        """Drop the collection's cached centroids (every collection's when None) and bump its
        erasure epoch, so that a match_users whose snapshot predates the drop does not put them back."""
        key = _EVERY_COLLECTION if collection_id is None else collection_id
        with self._centroids_lock:
            if collection_id is None:
                self._centroids.clear()
            else:
                self._centroids.pop(collection_id, None)
            self._erasure_epochs[key] = self._erasure_epochs.get(key, 0) + 1

    def _erasure_epoch(self, collection_id: int) -> int:
        """A number that changes whenever the collection's cached centroids are dropped (hold
        _centroids_lock)."""
        return self._erasure_epochs.get(collection_id, 0) + self._erasure_epochs.get(_EVERY_COLLECTION, 0)

    @property
    def durability(self) -> str:
        """What a committed write survives, read back from the database (see FaceStore.durability)."""
        return self.db.durability

    def index_of(self, coll: CollectionRow) -> CollectionIndex:
        """The collection's FAISS index, up to date with everything committed so far."""
        with self.indexes.lock_for(coll.id):
            with self.read() as tx:
                idx = self.indexes.current(tx, coll)
            self._save_if_due(idx)
            return idx

    def search(
        self, coll: CollectionRow, vector: np.ndarray, k: int, min_cosine: float
    ) -> list[tuple[int, float]]:
        """Up to ``k`` (label, cosine) of the collection's faces with cosine >= min_cosine, best first."""
        with self.indexes.lock_for(coll.id):
            with self.read() as tx:
                idx = self.indexes.current(tx, coll)
            self._save_if_due(idx)
            return self.indexes.search(idx, vector, k, min_cosine)

    def match_users(
        self, coll: CollectionRow, vector: np.ndarray, min_cosine: float, limit: int, exclude: str | None
    ) -> list[UserMatch]:
        """Users (other than ``exclude``) whose stored centroid has cosine >= min_cosine with
        ``vector``, best first, at most ``limit``. The centroids are cached per collection and
        re-read when the collection's users change."""
        with self._centroids_lock:
            epoch = self._erasure_epoch(coll.id)
        with self.read() as tx:
            version = tx.users_version(coll)
            with self._centroids_lock:
                cached = self._centroids.get(coll.id)
            if cached is None or cached[0] != version:
                ids, counts, matrix = tx.user_centroids(coll)
                cached = (version, ids, counts, matrix)
                with self._centroids_lock:
                    # a deletion committed since the snapshot began: its centroids must not return
                    if self._erasure_epoch(coll.id) == epoch:
                        self._centroids[coll.id] = cached
        _, ids, counts, matrix = cached
        if not ids:
            return []
        scores = matrix @ np.asarray(vector, dtype=np.float32)
        order = np.argsort(-scores, kind="stable")
        out: list[UserMatch] = []
        for i in order:
            if scores[i] < min_cosine or len(out) >= limit:
                break
            if ids[i] != exclude:
                out.append(UserMatch(ids[i], counts[i], float(scores[i])))
        return out

    def _save_if_due(self, idx: CollectionIndex) -> None:
        """Save an index just built when the backend keeps index files (call with its lock held);
        here: nothing."""
        idx.save_due = False

    def close(self) -> None:
        """Close the database."""
        self.db.close()


class Store(IndexedStore):
    """SQLite + FAISS under ``data_dir`` (``facepipe.sqlite3`` and ``indexes/``, all owner-only).

    ann_threshold: collections with more faces than this are searched with the quantized index.
    """

    def __init__(self, data_dir: Path, ann_threshold: int = DEFAULT_ANN_THRESHOLD) -> None:
        self.data_dir = Path(data_dir)
        super().__init__(
            Database(self.data_dir), IndexSet(self.data_dir / "indexes", ann_threshold=ann_threshold)
        )

    def _save_if_due(self, idx: CollectionIndex) -> None:
        """Save a just-built quantized index (call with its lock held)."""
        if idx.save_due:
            self._persist(idx.collection_id)

    def _persist(self, collection_id: int) -> None:
        """Save the collection's quantized index, caught up under the write lock (lock_for held)."""
        with self.db.write() as tx:
            coll = tx.find_collection_by_id(collection_id)
            if coll is None:
                return
            idx = self.indexes.current(tx, coll)
            if idx.kind == "pq" and not idx.saved:
                self.indexes.save(idx)

    def close(self) -> None:
        """Save quantized indexes not yet on disk (for a fast next open) and close the database."""
        for idx in self.indexes.cached():
            if idx.kind == "pq" and not idx.saved:
                with self.indexes.lock_for(idx.collection_id):
                    self._persist(idx.collection_id)
        self.db.close()


def open_store(settings: Settings) -> IndexedStore:
    """The store ``settings`` name: PostgreSQL when settings.store is a postgresql:// URL
    (pipeline.store.postgres; its local index snapshots under settings.data_dir/SNAPSHOT_DIRNAME),
    else SQLite + FAISS under settings.data_dir."""
    threshold = DEFAULT_ANN_THRESHOLD if settings.ann_threshold is None else settings.ann_threshold
    if settings.store:
        try:
            from pipeline.store.postgres import PostgresStore
        except ImportError as exc:
            raise InternalServerError(
                f"a PostgreSQL store needs psycopg ({exc}): pip install 'facepipe[postgresql]'"
            ) from exc
        return PostgresStore(
            settings.store, ann_threshold=threshold, snapshot_dir=settings.data_dir / SNAPSHOT_DIRNAME
        )
    return Store(settings.data_dir, ann_threshold=threshold)


if TYPE_CHECKING:  # mypy checks that the SQLite store keeps the contract
    _SQLITE_STORE_IS_A_FACE_STORE: type[FaceStore] = Store
