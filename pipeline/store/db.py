"""The SQLite backend's database: collections, faces (with their vectors), users, change log, tokens.

SQLite in WAL mode is the source of truth. Every write runs in one ``BEGIN IMMEDIATE``
transaction (one writer at a time across threads and processes, readers concurrent), with
``synchronous=FULL`` so an acknowledged write survives a crash. Face labels are int64 values from
an AUTOINCREMENT counter: monotonic and never reused, so a FAISS index can be caught up from the
``changes`` log (one row per face added to or removed from a collection; it holds labels only,
never vectors).

Erasure: every connection sets ``secure_delete=ON`` (deleted rows and freed pages are overwritten
with zeros), and after a write that deleted faces, users or a collection, :meth:`Database.erase_log`
checkpoints the write-ahead log into the database file and truncates it to zero bytes, so the
frames that still held the deleted values are gone from disk too. The database file, its -wal and
-shm files are created 0600 in a 0700 directory (see pipeline.store.files).

The schema is pipeline.store.migrations. Rows are built by column name. This module knows nothing
about Rekognition JSON; it raises the Rekognition error classes only for "not found" and
"already exists" conditions, and InternalServerError for a store it cannot safely use.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from pipeline.errors import InternalServerError, ResourceAlreadyExistsException
from pipeline.store.base import TxBase
from pipeline.store.files import make_private, private_directory, private_file
from pipeline.store.migrations import SCHEMA_VERSION, migrate
from pipeline.store.records import (
    CollectionRow,
    FaceRow,
    NewFace,
    UserRow,
    blob_to_vector,
    normalized_mean,
    vector_to_blob,
)
from pipeline.types import Vector

__all__ = [
    "DB_FILENAME",
    "SCHEMA_VERSION",
    "CollectionRow",
    "Database",
    "FaceRow",
    "NewFace",
    "Tx",
    "UserRow",
    "normalized_mean",
]

DB_FILENAME = "facepipe.sqlite3"
BUSY_TIMEOUT_MS = 60_000

_Record = TypeVar("_Record", CollectionRow, FaceRow, UserRow)


def _columns(record: type[Any]) -> str:
    return ", ".join(f.name for f in fields(record))


_COLLECTION_COLUMNS = _columns(CollectionRow)
_FACE_COLUMNS = _columns(FaceRow)
_USER_COLUMNS = _columns(UserRow)
_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {
    r: tuple(f.name for f in fields(r)) for r in (CollectionRow, FaceRow, UserRow)
}


def _record(record: type[_Record], row: sqlite3.Row) -> _Record:
    """A record built from the row's columns of the same names."""
    return record(**{name: row[name] for name in _FIELD_NAMES[record]})


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Put the database in WAL mode (it stays so, in the file).

    Switching from rollback to WAL mode may answer "database is locked" at once, without waiting
    for the busy timeout, while another process opens the same new database; retry until it is done
    (or BUSY_TIMEOUT_MS has passed).
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def face_insert_values(coll: CollectionRow, face: NewFace) -> tuple[object, ...]:
    """The values of one faces row, in the column order both backends' INSERT names: collection,
    face_id, image_id, external_image_id, dedup_key, box (left, top, width, height), confidence,
    created_at (epoch s, now) and the vector as float32 bytes."""
    return (
        coll.id,
        face.face_id,
        face.image_id,
        face.external_image_id,
        face.dedup_key,
        face.box_left,
        face.box_top,
        face.box_width,
        face.box_height,
        face.confidence,
        time.time(),
        vector_to_blob(face.vector),
    )


class Tx(TxBase):
    """Queries and updates inside one SQLite transaction (from :meth:`Database.read`/``write``).

    Implements pipeline.store.interface.StoreTransaction (its backend-neutral rules in
    pipeline.store.base.TxBase), plus the change-log and bulk-vector queries the FAISS indexes use.
    """

    def __init__(self, conn: sqlite3.Connection, writable: bool) -> None:
        super().__init__(writable)
        self.conn = conn

    # collections -------------------------------------------------------------------------------
    def find_collection(self, name: str) -> CollectionRow | None:
        row = self.conn.execute(
            f"SELECT {_COLLECTION_COLUMNS} FROM collections WHERE name = ?", (name,)
        ).fetchone()
        return _record(CollectionRow, row) if row else None

    def find_collection_by_id(self, collection_id: int) -> CollectionRow | None:
        """The collection with this internal id, or None."""
        row = self.conn.execute(
            f"SELECT {_COLLECTION_COLUMNS} FROM collections WHERE id = ?", (collection_id,)
        ).fetchone()
        return _record(CollectionRow, row) if row else None

    def insert_collection(
        self, name: str, arn: str, model_version: str, dim: int, tags: dict[str, str]
    ) -> CollectionRow:
        """Create a collection; ResourceAlreadyExistsException when the name is taken."""
        if self.find_collection(name) is not None:
            raise ResourceAlreadyExistsException(f"The collection id: {name} already exists")
        self.conn.execute(
            "INSERT INTO collections (name, arn, created_at, model_version, dim, tags) VALUES (?, ?, ?, ?, ?, ?)",
            (name, arn, time.time(), model_version, dim, json.dumps(tags, sort_keys=True)),
        )
        return self.collection(name)

    def delete_collection(self, coll: CollectionRow) -> None:
        """Delete a collection with its faces, users, change log and tokens."""
        for table in ("faces", "users", "changes", "tokens"):
            self.conn.execute(f"DELETE FROM {table} WHERE collection_id = ?", (coll.id,))
        self.conn.execute("DELETE FROM collections WHERE id = ?", (coll.id,))
        self.deleted_collections.add(coll.id)

    def list_collections(self, after: str | None, limit: int) -> list[CollectionRow]:
        """Collections in name order, starting after ``after``."""
        rows = self.conn.execute(
            f"SELECT {_COLLECTION_COLUMNS} FROM collections WHERE name > ? ORDER BY name LIMIT ?",
            (after or "", limit),
        ).fetchall()
        return [_record(CollectionRow, r) for r in rows]

    # faces ---------------------------------------------------------------------------------------
    def insert_face(self, coll: CollectionRow, face: NewFace) -> int:
        """Insert a face and log it for the index; returns its label."""
        cur = self.conn.execute(
            "INSERT INTO faces (collection_id, face_id, image_id, external_image_id, dedup_key, box_left, box_top,"
            " box_width, box_height, confidence, created_at, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            face_insert_values(coll, face),
        )
        label = int(cur.lastrowid or 0)
        self.conn.execute(
            "INSERT INTO changes (collection_id, label, added) VALUES (?, ?, 1)", (coll.id, label)
        )
        self.conn.execute("UPDATE collections SET face_count = face_count + 1 WHERE id = ?", (coll.id,))
        return label

    def faces_with_dedup_key(self, coll: CollectionRow, dedup_key: str) -> list[tuple[FaceRow, Vector]]:
        """Faces of the collection with this de-duplication key, with their vectors."""
        rows = self.conn.execute(
            f"SELECT {_FACE_COLUMNS}, vector FROM faces WHERE collection_id = ? AND dedup_key = ? ORDER BY label",
            (coll.id, dedup_key),
        ).fetchall()
        return [(_record(FaceRow, r), blob_to_vector(r["vector"])) for r in rows]

    def faces_by_id(self, coll: CollectionRow, face_ids: Iterable[str]) -> dict[str, FaceRow]:
        """The faces of this collection among ``face_ids``, by FaceId (missing ids are absent)."""
        ids = list(dict.fromkeys(face_ids))
        found: dict[str, FaceRow] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                # "+collection_id": look the ids up in face_id's unique index, not through the whole
                # collection (SQLite would walk faces_by_collection: 230 ms against 0.6 ms for 100
                # ids among 200,000 faces)
                f"SELECT {_FACE_COLUMNS} FROM faces WHERE +collection_id = ? AND face_id IN ({marks})",
                (coll.id, *chunk),
            ).fetchall()
            found.update({r["face_id"]: _record(FaceRow, r) for r in rows})
        return found

    def faces_by_label(self, labels: Sequence[int]) -> dict[int, FaceRow]:
        """Faces by label (missing labels are absent)."""
        found: dict[int, FaceRow] = {}
        for start in range(0, len(labels), 500):
            chunk = [int(x) for x in labels[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(f"SELECT {_FACE_COLUMNS} FROM faces WHERE label IN ({marks})", chunk)
            found.update({r["label"]: _record(FaceRow, r) for r in rows})
        return found

    def face_vector(self, label: int) -> Vector:
        """The stored vector of one face."""
        row = self.conn.execute("SELECT vector FROM faces WHERE label = ?", (label,)).fetchone()
        if row is None:
            raise KeyError(label)
        return blob_to_vector(row["vector"])

    def face_vectors(self, labels: Sequence[int]) -> dict[int, Vector]:
        """The stored vectors of these faces, by label (missing labels are absent)."""
        found: dict[int, Vector] = {}
        for start in range(0, len(labels), 500):
            chunk = [int(x) for x in labels[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(f"SELECT label, vector FROM faces WHERE label IN ({marks})", chunk)
            found.update({r["label"]: blob_to_vector(r["vector"]) for r in rows})
        return found

    def delete_faces(self, coll: CollectionRow, labels: Sequence[int]) -> None:
        """Delete faces (which must belong to ``coll``) and log the removals."""
        for label in labels:
            self.conn.execute("DELETE FROM faces WHERE label = ? AND collection_id = ?", (label, coll.id))
            self.conn.execute(
                "INSERT INTO changes (collection_id, label, added) VALUES (?, ?, 0)", (coll.id, label)
            )
        self.conn.execute(
            "UPDATE collections SET face_count = face_count - ? WHERE id = ?", (len(labels), coll.id)
        )
        if labels:
            self.deleted_faces.add(coll.id)
        self._compact_log(coll)

    def list_faces(
        self,
        coll: CollectionRow,
        after_label: int,
        limit: int,
        user_id: str | None = None,
        face_ids: Sequence[str] | None = None,
    ) -> list[FaceRow]:
        """Faces in label (indexing) order after ``after_label``, optionally of one user or among ids."""
        where = ["collection_id = ?", "label > ?"]
        args: list[Any] = [coll.id, after_label]
        if user_id is not None:
            where.append("user_id = ?")
            args.append(user_id)
        if face_ids is not None:  # at most 4,096 ids: found through face_id's index, then sorted
            where = ["+collection_id = ?", "+label > ?", *where[2:]]
            where.append(f"face_id IN ({','.join('?' * len(face_ids))})")
            args.extend(face_ids)
        rows = self.conn.execute(
            f"SELECT {_FACE_COLUMNS} FROM faces WHERE {' AND '.join(where)} ORDER BY label LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [_record(FaceRow, r) for r in rows]

    def all_vectors(self, coll: CollectionRow) -> tuple[np.ndarray, np.ndarray]:
        """(labels int64 (N,), vectors float32 (N, D)) of every face of the collection."""
        rows = self.conn.execute(
            "SELECT label, vector FROM faces WHERE collection_id = ? ORDER BY label", (coll.id,)
        ).fetchall()
        labels = np.fromiter((r["label"] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r["vector"] for r in rows), dtype="<f4").astype(np.float32)
        return labels, vectors.reshape(len(rows), coll.dim)

    # change log ----------------------------------------------------------------------------------
    def log_position(self, coll: CollectionRow) -> tuple[int, int]:
        """(floor, head): changes with seq <= floor are compacted away; head is the latest seq."""
        floor = self.conn.execute("SELECT log_floor FROM collections WHERE id = ?", (coll.id,)).fetchone()
        head = self.conn.execute(
            "SELECT max(seq) AS head FROM changes WHERE collection_id = ?", (coll.id,)
        ).fetchone()
        return int(floor["log_floor"]) if floor else 0, int(head["head"] or 0) if head else 0

    def changes_since(self, coll: CollectionRow, seq: int) -> list[tuple[int, int, int, bytes | None]]:
        """(seq, label, added, vector blob or None) of the changes after ``seq``, in order.

        The vector comes from the face's row (None once the face is deleted): the log itself
        holds no vectors."""
        rows = self.conn.execute(
            "SELECT c.seq, c.label, c.added, f.vector FROM changes c LEFT JOIN faces f ON f.label = c.label"
            " WHERE c.collection_id = ? AND c.seq > ? ORDER BY c.seq",
            (coll.id, seq),
        ).fetchall()
        return [(r["seq"], r["label"], r["added"], r["vector"]) for r in rows]

    def _changes_after(self, coll: CollectionRow, seq: int) -> int:
        row = self.conn.execute(
            "SELECT count(*) AS n FROM changes WHERE collection_id = ? AND seq > ?", (coll.id, seq)
        ).fetchone()
        return int(row["n"])

    def _drop_changes_through(self, coll: CollectionRow, seq: int) -> None:
        self.conn.execute("DELETE FROM changes WHERE collection_id = ? AND seq <= ?", (coll.id, seq))
        self.conn.execute("UPDATE collections SET log_floor = ? WHERE id = ?", (seq, coll.id))

    # users ---------------------------------------------------------------------------------------
    def find_user(self, coll: CollectionRow, user_id: str) -> UserRow | None:
        row = self.conn.execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE collection_id = ? AND user_id = ?",
            (coll.id, user_id),
        ).fetchone()
        return _record(UserRow, row) if row else None

    def insert_user(self, coll: CollectionRow, user_id: str) -> None:
        self.conn.execute(
            "INSERT INTO users (collection_id, user_id, created_at) VALUES (?, ?, ?)",
            (coll.id, user_id, time.time()),
        )
        self.conn.execute(
            "UPDATE collections SET user_count = user_count + 1, users_version = users_version + 1 WHERE id = ?",
            (coll.id,),
        )

    def delete_user(self, coll: CollectionRow, user_id: str) -> None:
        """Disassociate the user's faces, then delete the user."""
        self.conn.execute(
            "UPDATE faces SET user_id = NULL WHERE collection_id = ? AND user_id = ?", (coll.id, user_id)
        )
        self.conn.execute("DELETE FROM users WHERE collection_id = ? AND user_id = ?", (coll.id, user_id))
        self.conn.execute(
            "UPDATE collections SET user_count = user_count - 1, users_version = users_version + 1 WHERE id = ?",
            (coll.id,),
        )
        self.deleted_users.add(coll.id)

    def list_users(self, coll: CollectionRow, after: str | None, limit: int) -> list[UserRow]:
        rows = self.conn.execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE collection_id = ? AND user_id > ?"
            " ORDER BY user_id LIMIT ?",
            (coll.id, after or "", limit),
        ).fetchall()
        return [_record(UserRow, r) for r in rows]

    def user_vectors(self, coll: CollectionRow, user_id: str) -> np.ndarray:
        """Vectors (N, D) of the user's faces, in label order."""
        rows = self.conn.execute(
            "SELECT vector FROM faces WHERE collection_id = ? AND user_id = ? ORDER BY label",
            (coll.id, user_id),
        ).fetchall()
        return np.array([blob_to_vector(r["vector"]) for r in rows], dtype=np.float32).reshape(
            len(rows), coll.dim
        )

    def set_face_user(self, coll: CollectionRow, labels: Sequence[int], user_id: str | None) -> None:
        """Associate faces with ``user_id`` (None disassociates)."""
        for label in labels:
            self.conn.execute(
                "UPDATE faces SET user_id = ? WHERE label = ? AND collection_id = ?",
                (user_id, label, coll.id),
            )

    def _store_user_summary(
        self, coll: CollectionRow, user_id: str, face_count: int, centroid: bytes | None
    ) -> None:
        self.conn.execute(
            "UPDATE users SET face_count = ?, centroid = ? WHERE collection_id = ? AND user_id = ?",
            (face_count, centroid, coll.id, user_id),
        )
        self.conn.execute("UPDATE collections SET users_version = users_version + 1 WHERE id = ?", (coll.id,))

    def user_centroid(self, coll: CollectionRow, user_id: str) -> Vector | None:
        """The centroid stored by refresh_user (None for a user without faces or no such user)."""
        row = self.conn.execute(
            "SELECT centroid FROM users WHERE collection_id = ? AND user_id = ?", (coll.id, user_id)
        ).fetchone()
        return None if row is None or row["centroid"] is None else blob_to_vector(row["centroid"])

    def users_version(self, coll: CollectionRow) -> int:
        row = self.conn.execute("SELECT users_version FROM collections WHERE id = ?", (coll.id,)).fetchone()
        return int(row["users_version"]) if row else -1

    def user_centroids(self, coll: CollectionRow) -> tuple[list[str], list[int], np.ndarray]:
        """(user ids, face counts, centroids (U, D)) of the users that have at least one face."""
        rows = self.conn.execute(
            "SELECT user_id, face_count, centroid FROM users WHERE collection_id = ? AND centroid IS NOT NULL"
            " ORDER BY user_id",
            (coll.id,),
        ).fetchall()
        matrix = np.array([blob_to_vector(r["centroid"]) for r in rows], dtype=np.float32).reshape(
            len(rows), coll.dim
        )
        return [r["user_id"] for r in rows], [int(r["face_count"]) for r in rows], matrix

    # idempotency tokens --------------------------------------------------------------------------
    def find_token(self, coll: CollectionRow, operation: str, token: str) -> tuple[str, str] | None:
        """(request hash, stored response JSON) for a ClientRequestToken, or None."""
        row = self.conn.execute(
            "SELECT request_hash, response FROM tokens WHERE collection_id = ? AND operation = ? AND token = ?",
            (coll.id, operation, token),
        ).fetchone()
        return (row["request_hash"], row["response"]) if row else None

    def insert_token(
        self, coll: CollectionRow, operation: str, token: str, request_hash: str, response: str
    ) -> None:
        self.conn.execute(
            "INSERT INTO tokens (collection_id, operation, token, request_hash, response, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (coll.id, operation, token, request_hash, response, time.time()),
        )


class Database:
    """The SQLite file under a data directory, with one connection per thread.

    ``read()`` gives a consistent snapshot; ``write()`` holds the single write lock
    (BEGIN IMMEDIATE) and commits on success, rolls back on any exception. Opening applies the
    schema migrations (a store from a newer facepipe is refused with InternalServerError).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = private_directory(Path(data_dir))
        self.path = private_file(self.data_dir / DB_FILENAME)
        for suffix in ("-wal", "-shm"):  # made before these rules, or by another program
            make_private(self.data_dir / (DB_FILENAME + suffix))
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self.schema_version = SCHEMA_VERSION
        try:
            with self.write() as tx:
                migrate(tx.conn, str(self.data_dir))
        except BaseException:
            self.close()
            raise

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("the store is closed")
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # takes effect only in a new, empty database (older ones switch at their first VACUUM)
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA secure_delete = ON")
            if conn.execute("PRAGMA secure_delete").fetchone()[0] != 1:
                conn.close()
                raise InternalServerError("this SQLite cannot overwrite deleted data (secure_delete)")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read transaction: every query inside sees the same committed snapshot."""
        conn = self._connection()
        conn.execute("BEGIN")
        try:
            yield Tx(conn, writable=False)
        finally:
            conn.execute("COMMIT")

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """The write transaction (BEGIN IMMEDIATE): committed when the block ends without error."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield Tx(conn, writable=True)
            conn.execute("COMMIT")
        except BaseException:
            # also when COMMIT itself fails (disk full, I/O error): leave no transaction open
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @property
    def durability(self) -> str:
        """The journal mode and synchronous level of this thread's connection, as SQLite reports
        them (e.g. "SQLite WAL, synchronous=FULL")."""
        conn = self._connection()
        journal = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).upper()
        level = int(conn.execute("PRAGMA synchronous").fetchone()[0])
        names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
        return f"SQLite {journal}, synchronous={names.get(level, str(level))}"

    def reclaim_space(self) -> None:
        """Give the database's free pages back to the file system (call outside a transaction).

        A store created with ``auto_vacuum=INCREMENTAL`` moves its last pages into the free ones
        (cost proportional to the pages freed); an older store is VACUUMed once, which rewrites it
        whole and switches it to incremental mode for next time. The file shrinks at the next
        checkpoint (:meth:`erase_log`)."""
        conn = self._connection()
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
            conn.executescript("PRAGMA incremental_vacuum;")  # executescript runs it to the end
        else:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("VACUUM")

    def erase_log(self) -> None:
        """Checkpoint the write-ahead log into the database file and truncate it to zero bytes.

        Waits (up to the busy timeout) for other connections' read transactions on older
        snapshots to end, since their frames cannot be dropped before. InternalServerError when
        that does not happen in time: the deletion is committed, and the next write that deletes
        anything (or SQLite's own checkpoint when the last connection closes) finishes the erasure.
        """
        conn = self._connection()
        wal = self.path.with_name(self.path.name + "-wal")
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            try:
                size = wal.stat().st_size
            except FileNotFoundError:
                size = 0
            if not busy and size == 0:
                return
            if time.monotonic() > deadline:
                raise InternalServerError(
                    "the deletion is committed but the write-ahead log could not be truncated: "
                    "another reader held an old snapshot too long; it is erased at the next deletion"
                )
            time.sleep(0.01)

    def close(self) -> None:
        """Close every connection this object opened."""
        with self._lock:
            self._closed = True
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
