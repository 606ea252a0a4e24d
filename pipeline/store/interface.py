"""What the service needs from a store: the contract a backend implements (SQLite and PostgreSQL).

A backend provides a :class:`FaceStore`; its transactions are :class:`StoreTransaction` objects.
The service (pipeline.service) uses nothing else of the store. Rules every backend keeps:

- ``write()`` is one atomic transaction, committed when the block ends and rolled back when it
  raises, and no other write to a collection it touches runs between its reads and its commit
  (SQLite: one writer at a time, BEGIN IMMEDIATE; PostgreSQL: READ COMMITTED plus a row lock on
  each collection, taken when the transaction first reads it). ``read()`` sees one committed
  snapshot. Both may be used from many threads.
- Face labels are int64, unique in the store and never reused.
- "Not found" and "already exists" are the Rekognition errors (ResourceNotFoundException,
  ResourceAlreadyExistsException); nothing else of Rekognition is known here.
- Erasure: when a ``write()`` that deleted faces, users or a collection returns, the deleted
  vectors and centroids are gone from this process's indexes and caches, and the backend has done
  what it can on disk: SQLite leaves no copy in its files; PostgreSQL VACUUMs the tables, which
  prunes the rows but may leave their bytes in free page space and the write-ahead log (see
  pipeline/store/postgres.py and README, "Store").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

import numpy as np

from pipeline.store.records import CollectionRow, FaceRow, NewFace, UserMatch, UserRow
from pipeline.types import Vector


class StoreTransaction(Protocol):
    """Queries and updates inside one transaction."""

    # collections
    def find_collection(self, name: str) -> CollectionRow | None:
        """The collection named ``name``, or None."""
        ...

    def collection(self, name: str) -> CollectionRow:
        """The collection named ``name``; ResourceNotFoundException when there is none."""
        ...

    def insert_collection(
        self, name: str, arn: str, model_version: str, dim: int, tags: dict[str, str]
    ) -> CollectionRow:
        """Create a collection; ResourceAlreadyExistsException when the name is taken."""
        ...

    def delete_collection(self, coll: CollectionRow) -> None:
        """Delete a collection with its faces, users and tokens (erased when the write returns)."""
        ...

    def list_collections(self, after: str | None, limit: int) -> list[CollectionRow]:
        """Up to ``limit`` collections in name order, starting after the name ``after``."""
        ...

    # faces
    def insert_face(self, coll: CollectionRow, face: NewFace) -> int:
        """Insert a face; returns its new label."""
        ...

    def faces_with_dedup_key(self, coll: CollectionRow, dedup_key: str) -> list[tuple[FaceRow, Vector]]:
        """Faces of the collection with this de-duplication key and their vectors, in label order."""
        ...

    def faces_by_id(self, coll: CollectionRow, face_ids: Iterable[str]) -> dict[str, FaceRow]:
        """The faces of this collection among ``face_ids``, by FaceId (missing ids are absent)."""
        ...

    def faces_by_label(self, labels: Sequence[int]) -> dict[int, FaceRow]:
        """Faces by label (missing labels are absent)."""
        ...

    def face_vector(self, label: int) -> Vector:
        """The stored vector of one face (KeyError when there is no such face)."""
        ...

    def face_vectors(self, labels: Sequence[int]) -> dict[int, Vector]:
        """The stored vectors of these faces, by label (missing labels are absent)."""
        ...

    def delete_faces(self, coll: CollectionRow, labels: Sequence[int]) -> None:
        """Delete faces of ``coll`` (erased when the write returns)."""
        ...

    def list_faces(
        self,
        coll: CollectionRow,
        after_label: int,
        limit: int,
        user_id: str | None = None,
        face_ids: Sequence[str] | None = None,
    ) -> list[FaceRow]:
        """Up to ``limit`` faces in label order after ``after_label``, optionally of one user or
        among ``face_ids``."""
        ...

    # users
    def find_user(self, coll: CollectionRow, user_id: str) -> UserRow | None:
        """The user, or None."""
        ...

    def user(self, coll: CollectionRow, user_id: str) -> UserRow:
        """The user; ResourceNotFoundException when it does not exist."""
        ...

    def insert_user(self, coll: CollectionRow, user_id: str) -> None:
        """Create a user without faces."""
        ...

    def delete_user(self, coll: CollectionRow, user_id: str) -> None:
        """Disassociate the user's faces and delete the user (its centroid is erased when the
        write returns)."""
        ...

    def list_users(self, coll: CollectionRow, after: str | None, limit: int) -> list[UserRow]:
        """Up to ``limit`` users in UserId order after ``after``."""
        ...

    def set_face_user(self, coll: CollectionRow, labels: Sequence[int], user_id: str | None) -> None:
        """Associate faces with ``user_id`` (None disassociates); call refresh_user afterwards."""
        ...

    def refresh_user(self, coll: CollectionRow, user_id: str) -> int:
        """Recompute and store the user's face count and centroid; returns the face count."""
        ...

    def user_centroid(self, coll: CollectionRow, user_id: str) -> Vector | None:
        """The user's stored centroid (normalised mean of its faces' vectors); None without faces."""
        ...

    # idempotency tokens
    def find_token(self, coll: CollectionRow, operation: str, token: str) -> tuple[str, str] | None:
        """(request hash, stored response JSON) for a ClientRequestToken, or None."""
        ...

    def insert_token(
        self, coll: CollectionRow, operation: str, token: str, request_hash: str, response: str
    ) -> None:
        """Remember a ClientRequestToken with its request hash and response JSON."""
        ...


class FaceStore(Protocol):
    """A store: transactions plus the two similarity searches."""

    def read(self) -> AbstractContextManager[StoreTransaction]:
        """A read transaction (one consistent snapshot)."""
        ...

    def write(self) -> AbstractContextManager[StoreTransaction]:
        """The write transaction: committed when the block ends, rolled back on an exception."""
        ...

    def search(
        self, coll: CollectionRow, vector: np.ndarray, k: int, min_cosine: float
    ) -> list[tuple[int, float]]:
        """Up to ``k`` (label, cosine) of the collection's faces with cosine >= min_cosine, best
        first, as of everything committed before the call."""
        ...

    def match_users(
        self, coll: CollectionRow, vector: np.ndarray, min_cosine: float, limit: int, exclude: str | None
    ) -> list[UserMatch]:
        """Up to ``limit`` users (other than ``exclude``) whose centroid has cosine >= min_cosine
        with ``vector``, best first; users without faces never match."""
        ...

    @property
    def durability(self) -> str:
        """What a committed write survives, read back from the backend's own settings
        (e.g. "SQLite WAL, synchronous=FULL", "PostgreSQL synchronous_commit=on")."""
        ...

    def close(self) -> None:
        """Release the store's resources."""
        ...
