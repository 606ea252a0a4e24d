"""What the transactions of both backends share: the rules written once, each backend adding its SQL.

``TxBase`` holds the backend-neutral part of a store transaction (pipeline.store.db.Tx on SQLite,
pipeline.store.postgres.PostgresTx on PostgreSQL): the "not found" errors, recomputing a user's face
count and centroid, the change-log compaction rule, and the record of what the transaction erased.
A backend implements the queries it builds on (the abstract methods) in its own SQL dialect.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from pipeline.errors import ResourceNotFoundException
from pipeline.store.records import CollectionRow, UserRow, normalized_mean, vector_to_blob

LOG_KEEP = 50_000
"""Change-log rows kept per collection after a compaction (older readers rebuild their index)."""


class TxBase(ABC):
    """The backend-neutral part of a store transaction (see the module docstring).

    ``deleted_faces``, ``deleted_users`` and ``deleted_collections`` collect the ids of the
    collections whose data this transaction erased, for the store to finish the erasure after the
    commit.
    """

    def __init__(self, writable: bool) -> None:
        self.writable = writable
        self.deleted_faces: set[int] = set()
        self.deleted_users: set[int] = set()
        self.deleted_collections: set[int] = set()

    @property
    def erases(self) -> bool:
        """Whether this transaction deleted a vector or a centroid."""
        return bool(self.deleted_faces or self.deleted_users or self.deleted_collections)

    # what each backend queries ----------------------------------------------------------------
    @abstractmethod
    def find_collection(self, name: str) -> CollectionRow | None:
        """The collection named ``name``, or None."""

    @abstractmethod
    def find_user(self, coll: CollectionRow, user_id: str) -> UserRow | None:
        """The user, or None."""

    @abstractmethod
    def user_vectors(self, coll: CollectionRow, user_id: str) -> np.ndarray:
        """Vectors (N, D) of the user's faces, in label order."""

    @abstractmethod
    def log_position(self, coll: CollectionRow) -> tuple[int, int]:
        """(floor, head): changes with seq <= floor are compacted away; head is the latest seq."""

    @abstractmethod
    def _store_user_summary(
        self, coll: CollectionRow, user_id: str, face_count: int, centroid: bytes | None
    ) -> None:
        """Write the user's face count and centroid (float32 bytes, None without faces) and bump
        the collection's users_version."""

    @abstractmethod
    def _changes_after(self, coll: CollectionRow, seq: int) -> int:
        """How many change-log rows of the collection come after ``seq``."""

    @abstractmethod
    def _drop_changes_through(self, coll: CollectionRow, seq: int) -> None:
        """Delete the collection's change-log rows up to ``seq`` and make ``seq`` its floor."""

    # the shared rules -----------------------------------------------------------------------------
    def collection(self, name: str) -> CollectionRow:
        """The collection named ``name``; ResourceNotFoundException when there is none."""
        found = self.find_collection(name)
        if found is None:
            raise ResourceNotFoundException(f"The collection id: {name} does not exist")
        return found

    def user(self, coll: CollectionRow, user_id: str) -> UserRow:
        """The user; ResourceNotFoundException when it does not exist."""
        found = self.find_user(coll, user_id)
        if found is None:
            raise ResourceNotFoundException(
                f"The user id: {user_id} does not exist in collection {coll.name}"
            )
        return found

    def refresh_user(self, coll: CollectionRow, user_id: str) -> int:
        """Recompute the user's face count and centroid from its faces; returns the face count."""
        vectors = self.user_vectors(coll, user_id)
        centroid = normalized_mean(vectors)
        self._store_user_summary(
            coll, user_id, len(vectors), None if centroid is None else vector_to_blob(centroid)
        )
        return len(vectors)

    def compact_log_if_large(self, coll: CollectionRow) -> None:
        """Drop old change-log rows once there are many (indexes older than the floor rebuild)."""
        self._compact_log(coll)

    def _compact_log(self, coll: CollectionRow) -> None:
        """Keep the last LOG_KEEP changes once more than twice that many follow the floor."""
        floor, head = self.log_position(coll)
        if self._changes_after(coll, floor) > 2 * LOG_KEEP:
            self._drop_changes_through(coll, head - LOG_KEEP)
