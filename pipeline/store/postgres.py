"""The PostgreSQL backend: one database shared by several servers and jobs, vectors included.

    store = PostgresStore("postgresql://user:password@host:5432/facepipe")
    with store.write() as tx: ...     # READ COMMITTED + a row lock on each collection written
    with store.read() as tx: ...      # REPEATABLE READ READ ONLY: one snapshot
    store.search(...), store.match_users(...)      # as the SQLite Store (FAISS in this process)
    store.remember_signature(signature, expires_at) -> bool    # the SigV4 replay guard, shared

PostgreSQL is the source of truth; each process keeps one FAISS index per collection in memory,
caught up from the ``changes`` log before every search (so a search on any server sees every write
committed before it started, whichever server made it). A listener thread per process (LISTEN
``facepipe_changes``) hears each committed write's collection and applies it at once: a deleted
collection's index and centroids leave this process's memory, deleted faces are erased from its
index, and the catch-up work is done before the next search needs it. Correctness never depends on
the notification; it bounds how long another server holds a deleted vector in memory (and in its
local index snapshot: see :class:`PostgresStore`, which saves large indexes in the server's data
directory so that a restart replays only the change log after them).

Concurrency: a write transaction runs at READ COMMITTED and takes ``SELECT ... FOR UPDATE`` on the
row of every collection it touches, before touching it. That makes the writers of one collection
strictly one at a time, on every server (as SQLite's single writer per database does on one
machine), so the 100-face user limit, one user per face, unique UserIds, counts and idempotency
tokens are checked and updated with no other writer in between; writers of other collections run
in parallel. Why not SERIALIZABLE: ``write()`` wraps the service's own code, which a store cannot
re-run, so a serialization failure could only be handed to the client; with the row lock, writers
wait instead of failing. Change-log positions of one collection are therefore committed in order,
which the FAISS catch-up relies on. What is retried (boundedly) is what has not yet run any of the
caller's work: getting a live connection and beginning the transaction (after a server restart the
pool's dead connections are discarded there), and the migration transaction on a serialization
failure or deadlock.

Errors (all InternalServerError, HTTP 500, which the AWS SDKs retry by themselves): an unreachable
server, refused credentials or a missing database when opening; a schema newer than this program; a
connection lost during a request (the message says whether the commit may have happened: retry with
the same ClientRequestToken, or IndexFaces' de-duplication, makes that safe); no connection within
POOL_TIMEOUT_S. The URL's password never appears in a message.

Erasure (see the README): PostgreSQL never overwrites a row in place; a deleted row stays in its
heap page as a dead tuple until VACUUM. After every write that deleted faces, users or a
collection, :meth:`PostgresDatabase.erase_log` VACUUMs ``faces`` and ``users`` (the tables holding
vectors and centroids, stored PLAIN: no TOAST copies), which prunes the dead tuples (unless an older
snapshot still sees them) and their index entries. Measured (benchmarks/measure_postgres_erasure.py):
of 45 deleted vectors, all 45 were still in the heap file after the commit, 9 after the VACUUM (pruned
tuples' bytes left in pages' free space: PostgreSQL does not zero it) and 1 after as many new faces
were written; all 45 stayed in the write-ahead log, whose segments are recycled and overwritten only
as later writes need them. WAL archives, replicas and backups are beyond facepipe's reach.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import class_row, dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from pipeline.errors import InternalServerError, ResourceAlreadyExistsException, ResourceNotFoundException
from pipeline.store import IndexedStore
from pipeline.store.base import TxBase
from pipeline.store.db import blob_to_vector, face_insert_values
from pipeline.store.files import private_directory
from pipeline.store.index import DEFAULT_ANN_THRESHOLD, TEMP_PREFIX, CollectionIndex, IndexSet
from pipeline.store.interface import FaceStore, StoreTransaction
from pipeline.store.pg_migrations import MIGRATIONS, SCHEMA_VERSION
from pipeline.store.records import CollectionRow, FaceRow, NewFace, UserRow
from pipeline.types import Vector

__all__ = [
    "PostgresDatabase",
    "PostgresStore",
    "PostgresTx",
    "SharedReplayGuard",
    "is_postgres_url",
    "redacted",
]

log = logging.getLogger(__name__)

URL_SCHEMES = ("postgresql://", "postgres://")
CHANNEL = "facepipe_changes"
"""LISTEN/NOTIFY channel: the payload is the id of a collection a committed write changed."""
POOL_MIN = 1
POOL_MAX = 16
"""Connections per process (the server runs its requests on at most --threads at a time)."""
POOL_TIMEOUT_S = 10.0
"""Longest a request waits for a free connection."""
CONNECT_TIMEOUT_S = 5
LOCK_TIMEOUT = "60s"
"""Longest a writer waits for a collection's row lock (SQLite's busy timeout is 60 s too)."""
START_DELAYS_S = (0.0, 0.05, 0.2, 0.5, 1.0, 2.0)
"""Waits before each attempt to get a live connection and begin (about 4 s in all)."""
RETRY_ATTEMPTS = 5
"""Attempts of the migration transaction on a serialization failure or deadlock."""
SIGNATURE_SWEEP_S = 60.0
"""How often a process deletes expired replay-guard signatures."""
_ADVISORY_MIGRATION_KEY = 0x66616365  # "face": serialises the migration of one database
SNAPSHOT_MIN_FACES = 10_000
"""Fewest faces an index must hold to be saved as a local snapshot (smaller ones are read from the
database in a fraction of a second, and keep no copy of their vectors on local disk)."""
_VACUUMED_TABLES = ("faces", "users")
"""The tables that hold vectors (faces) and centroids (users)."""

_Record = TypeVar("_Record", CollectionRow, FaceRow, UserRow)
_T = TypeVar("_T")


def _columns(record: type[Any]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(f.name) for f in fields(record))


_COLLECTION_COLUMNS = _columns(CollectionRow)
_FACE_COLUMNS = _columns(FaceRow)
_USER_COLUMNS = _columns(UserRow)


def is_postgres_url(value: str | None) -> bool:
    """Whether ``value`` names a PostgreSQL store (postgresql:// or postgres://)."""
    return bool(value) and str(value).startswith(URL_SCHEMES)


def redacted(url: str) -> str:
    """``user@host:port/dbname`` of a connection URL, without its password (for messages)."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable PostgreSQL URL>"
    user = str(parts.get("user", ""))
    host = str(parts.get("host", "localhost"))
    port = str(parts.get("port", "5432"))
    return f"{user + '@' if user else ''}{host}:{port}/{parts.get('dbname', '')}"


def _one_line(exc: BaseException) -> str:
    """A driver error as one line (libpq's messages span several)."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected))


def _connect_error(where: str, exc: psycopg.Error) -> InternalServerError:
    """The clear error for a failed connection: refused credentials, missing database, unreachable."""
    text = _one_line(exc)
    state = getattr(exc, "sqlstate", None)
    if state in ("28P01", "28000") or "authentication failed" in str(exc):
        return InternalServerError(f"the PostgreSQL store {where} refused the credentials: {text}")
    if state == "3D000" or "does not exist" in str(exc):
        return InternalServerError(f"the PostgreSQL store {where} has no such database: {text}")
    return InternalServerError(f"the PostgreSQL store {where} is unreachable: {text}")


class PostgresTx(TxBase):
    """Queries and updates inside one PostgreSQL transaction (from PostgresDatabase.read/write).

    The same methods, arguments, results and errors as the SQLite backend's transaction
    (pipeline.store.db.Tx; the rules both share are in pipeline.store.base.TxBase), so the service
    and the FAISS indexes use either. In a write transaction every method that touches a collection
    first holds that collection's row lock (see the module docstring). ``changed`` collects the
    collections to notify other processes of after the commit.
    """

    def __init__(self, conn: psycopg.Connection[Any], writable: bool) -> None:
        super().__init__(writable)
        self.conn = conn
        self.changed: set[int] = set()
        self._locked: set[int] = set()

    # helpers -------------------------------------------------------------------------------------
    def _rows(self, record: type[_Record], query: sql.Composed, args: Sequence[Any]) -> list[_Record]:
        with self.conn.cursor(row_factory=class_row(record)) as cur:
            return cur.execute(query, args).fetchall()

    def _dicts(self, query: sql.Composable | str, args: Sequence[Any]) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row, binary=True) as cur:
            return cur.execute(query, args).fetchall()  # type: ignore[arg-type]

    def _hold(self, coll: CollectionRow) -> None:
        """In a write transaction: take the collection's row lock (once); ResourceNotFoundException
        when another server deleted the collection meanwhile."""
        if not self.writable or coll.id in self._locked:
            return
        row = self.conn.execute("SELECT id FROM collections WHERE id = %s FOR UPDATE", (coll.id,)).fetchone()
        if row is None:
            raise ResourceNotFoundException(f"The collection id: {coll.name} does not exist")
        self._locked.add(coll.id)

    def _collection_where(self, column: str, value: Any) -> CollectionRow | None:
        lock = sql.SQL(" FOR UPDATE") if self.writable else sql.SQL("")
        query = sql.SQL("SELECT {} FROM collections WHERE {} = %s{}").format(
            _COLLECTION_COLUMNS, sql.Identifier(column), lock
        )
        rows = self._rows(CollectionRow, query, (value,))
        if not rows:
            return None
        if self.writable:
            self._locked.add(rows[0].id)
        return rows[0]

    # collections -------------------------------------------------------------------------------
    def find_collection(self, name: str) -> CollectionRow | None:
        """The collection named ``name`` (row-locked in a write transaction), or None."""
        return self._collection_where("name", name)

    def find_collection_by_id(self, collection_id: int) -> CollectionRow | None:
        """The collection with this internal id (row-locked in a write transaction), or None."""
        return self._collection_where("id", collection_id)

    def insert_collection(
        self, name: str, arn: str, model_version: str, dim: int, tags: dict[str, str]
    ) -> CollectionRow:
        """Create a collection; ResourceAlreadyExistsException when the name is taken."""
        inserted = self.conn.execute(
            "INSERT INTO collections (name, arn, created_at, model_version, dim, tags)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING RETURNING id",
            (name, arn, time.time(), model_version, dim, json.dumps(tags, sort_keys=True)),
        ).fetchone()
        if inserted is None:
            raise ResourceAlreadyExistsException(f"The collection id: {name} already exists")
        self.changed.add(int(inserted[0]))
        return self.collection(name)

    def delete_collection(self, coll: CollectionRow) -> None:
        """Delete a collection with its faces, users, change log and tokens."""
        self._hold(coll)
        for table in ("faces", "users", "changes", "tokens"):
            self.conn.execute(
                sql.SQL("DELETE FROM {} WHERE collection_id = %s").format(sql.Identifier(table)), (coll.id,)
            )
        self.conn.execute("DELETE FROM collections WHERE id = %s", (coll.id,))
        self.deleted_collections.add(coll.id)
        self.changed.add(coll.id)

    def list_collections(self, after: str | None, limit: int) -> list[CollectionRow]:
        """Collections in name order, starting after ``after``."""
        query = sql.SQL(
            'SELECT {} FROM collections WHERE name COLLATE "C" > %s ORDER BY name COLLATE "C" LIMIT %s'
        ).format(_COLLECTION_COLUMNS)
        return self._rows(CollectionRow, query, (after or "", limit))

    # faces ---------------------------------------------------------------------------------------
    def insert_face(self, coll: CollectionRow, face: NewFace) -> int:
        """Insert a face and log it for the index; returns its label."""
        self._hold(coll)
        row = self.conn.execute(
            "INSERT INTO faces (collection_id, face_id, image_id, external_image_id, dedup_key, box_left,"
            " box_top, box_width, box_height, confidence, created_at, vector)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING label",
            face_insert_values(coll, face),
        ).fetchone()
        assert row is not None
        label = int(row[0])
        self.conn.execute(
            "INSERT INTO changes (collection_id, label, added) VALUES (%s, %s, 1)", (coll.id, label)
        )
        self.conn.execute("UPDATE collections SET face_count = face_count + 1 WHERE id = %s", (coll.id,))
        self.changed.add(coll.id)
        return label

    def faces_with_dedup_key(self, coll: CollectionRow, dedup_key: str) -> list[tuple[FaceRow, Vector]]:
        """Faces of the collection with this de-duplication key, with their vectors."""
        self._hold(coll)
        rows = self._dicts(
            sql.SQL(
                "SELECT {}, vector FROM faces WHERE collection_id = %s AND dedup_key = %s ORDER BY label"
            ).format(_FACE_COLUMNS),
            (coll.id, dedup_key),
        )
        return [(_face(r), blob_to_vector(r["vector"])) for r in rows]

    def faces_by_id(self, coll: CollectionRow, face_ids: Iterable[str]) -> dict[str, FaceRow]:
        """The faces of this collection among ``face_ids``, by FaceId (missing ids are absent)."""
        self._hold(coll)
        query = sql.SQL("SELECT {} FROM faces WHERE collection_id = %s AND face_id = ANY(%s)").format(
            _FACE_COLUMNS
        )
        rows = self._rows(FaceRow, query, (coll.id, list(dict.fromkeys(face_ids))))
        return {r.face_id: r for r in rows}

    def faces_by_label(self, labels: Sequence[int]) -> dict[int, FaceRow]:
        """Faces by label (missing labels are absent)."""
        query = sql.SQL("SELECT {} FROM faces WHERE label = ANY(%s)").format(_FACE_COLUMNS)
        rows = self._rows(FaceRow, query, ([int(x) for x in labels],))
        return {r.label: r for r in rows}

    def face_vector(self, label: int) -> Vector:
        """The stored vector of one face (KeyError when there is no such face)."""
        rows = self._dicts("SELECT vector FROM faces WHERE label = %s", (int(label),))
        if not rows:
            raise KeyError(label)
        return blob_to_vector(rows[0]["vector"])

    def face_vectors(self, labels: Sequence[int]) -> dict[int, Vector]:
        """The stored vectors of these faces, by label (missing labels are absent)."""
        rows = self._dicts(
            "SELECT label, vector FROM faces WHERE label = ANY(%s)", ([int(x) for x in labels],)
        )
        return {int(r["label"]): blob_to_vector(r["vector"]) for r in rows}

    def delete_faces(self, coll: CollectionRow, labels: Sequence[int]) -> None:
        """Delete faces (which must belong to ``coll``) and log the removals."""
        self._hold(coll)
        wanted = [int(x) for x in labels]
        self.conn.execute("DELETE FROM faces WHERE label = ANY(%s) AND collection_id = %s", (wanted, coll.id))
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO changes (collection_id, label, added) VALUES (%s, %s, 0)",
                [(coll.id, label) for label in wanted],
            )
        self.conn.execute(
            "UPDATE collections SET face_count = face_count - %s WHERE id = %s", (len(wanted), coll.id)
        )
        if wanted:
            self.deleted_faces.add(coll.id)
            self.changed.add(coll.id)
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
        self._hold(coll)
        where = [sql.SQL("collection_id = %s"), sql.SQL("label > %s")]
        args: list[Any] = [coll.id, after_label]
        if user_id is not None:
            where.append(sql.SQL("user_id = %s"))
            args.append(user_id)
        if face_ids is not None:
            where.append(sql.SQL("face_id = ANY(%s)"))
            args.append(list(face_ids))
        query = sql.SQL("SELECT {} FROM faces WHERE {} ORDER BY label LIMIT %s").format(
            _FACE_COLUMNS, sql.SQL(" AND ").join(where)
        )
        return self._rows(FaceRow, query, (*args, limit))

    def all_vectors(self, coll: CollectionRow) -> tuple[np.ndarray, np.ndarray]:
        """(labels int64 (N,), vectors float32 (N, D)) of every face of the collection."""
        with self.conn.cursor(binary=True) as cur:
            rows = cur.execute(
                "SELECT label, vector FROM faces WHERE collection_id = %s ORDER BY label", (coll.id,)
            ).fetchall()
        labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").astype(np.float32)
        return labels, vectors.reshape(len(rows), coll.dim)

    # change log ----------------------------------------------------------------------------------
    def log_position(self, coll: CollectionRow) -> tuple[int, int]:
        """(floor, head): changes with seq <= floor are compacted away; head is the latest seq."""
        row = self.conn.execute(
            "SELECT (SELECT log_floor FROM collections WHERE id = %s),"
            " (SELECT max(seq) FROM changes WHERE collection_id = %s)",
            (coll.id, coll.id),
        ).fetchone()
        assert row is not None
        return int(row[0] or 0), int(row[1] or 0)

    def changes_since(self, coll: CollectionRow, seq: int) -> list[tuple[int, int, int, bytes | None]]:
        """(seq, label, added, vector blob or None) of the changes after ``seq``, in order.

        The vector comes from the face's row (None once the face is deleted)."""
        with self.conn.cursor(binary=True) as cur:
            rows = cur.execute(
                "SELECT c.seq, c.label, c.added, f.vector FROM changes c LEFT JOIN faces f ON f.label = c.label"
                " WHERE c.collection_id = %s AND c.seq > %s ORDER BY c.seq",
                (coll.id, seq),
            ).fetchall()
        return [(int(r[0]), int(r[1]), int(r[2]), None if r[3] is None else bytes(r[3])) for r in rows]

    def _changes_after(self, coll: CollectionRow, seq: int) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM changes WHERE collection_id = %s AND seq > %s", (coll.id, seq)
        ).fetchone()
        return int(row[0]) if row else 0

    def _drop_changes_through(self, coll: CollectionRow, seq: int) -> None:
        self.conn.execute("DELETE FROM changes WHERE collection_id = %s AND seq <= %s", (coll.id, seq))
        self.conn.execute("UPDATE collections SET log_floor = %s WHERE id = %s", (seq, coll.id))

    def compact_log_if_large(self, coll: CollectionRow) -> None:
        """Drop old change-log rows once there are many (indexes older than the floor rebuild)."""
        self._hold(coll)
        self._compact_log(coll)

    def face_count(self, coll: CollectionRow) -> int:
        """The collection's face count in this transaction's snapshot (-1 when it does not exist)."""
        row = self.conn.execute("SELECT face_count FROM collections WHERE id = %s", (coll.id,)).fetchone()
        return int(row[0]) if row else -1

    def removed_since(self, collection_id: int, seq: int) -> bool:
        """Whether an index at change-log position ``seq`` misses a removal: a face removed after
        it, the log compacted past it, or the collection deleted."""
        row = self.conn.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM collections WHERE id = %s AND log_floor <= %s)"
            " OR EXISTS (SELECT 1 FROM changes WHERE collection_id = %s AND seq > %s AND added = 0)",
            (collection_id, seq, collection_id, seq),
        ).fetchone()
        return bool(row and row[0])

    # users ---------------------------------------------------------------------------------------
    def find_user(self, coll: CollectionRow, user_id: str) -> UserRow | None:
        """The user, or None."""
        self._hold(coll)
        query = sql.SQL("SELECT {} FROM users WHERE collection_id = %s AND user_id = %s").format(
            _USER_COLUMNS
        )
        rows = self._rows(UserRow, query, (coll.id, user_id))
        return rows[0] if rows else None

    def insert_user(self, coll: CollectionRow, user_id: str) -> None:
        """Create a user without faces."""
        self._hold(coll)
        self.conn.execute(
            "INSERT INTO users (collection_id, user_id, created_at) VALUES (%s, %s, %s)",
            (coll.id, user_id, time.time()),
        )
        self.conn.execute(
            "UPDATE collections SET user_count = user_count + 1, users_version = users_version + 1"
            " WHERE id = %s",
            (coll.id,),
        )
        self.changed.add(coll.id)

    def delete_user(self, coll: CollectionRow, user_id: str) -> None:
        """Disassociate the user's faces, then delete the user."""
        self._hold(coll)
        self.conn.execute(
            "UPDATE faces SET user_id = NULL WHERE collection_id = %s AND user_id = %s", (coll.id, user_id)
        )
        self.conn.execute("DELETE FROM users WHERE collection_id = %s AND user_id = %s", (coll.id, user_id))
        self.conn.execute(
            "UPDATE collections SET user_count = user_count - 1, users_version = users_version + 1"
            " WHERE id = %s",
            (coll.id,),
        )
        self.deleted_users.add(coll.id)
        self.changed.add(coll.id)

    def list_users(self, coll: CollectionRow, after: str | None, limit: int) -> list[UserRow]:
        """Users in UserId order after ``after``."""
        self._hold(coll)
        query = sql.SQL(
            'SELECT {} FROM users WHERE collection_id = %s AND user_id COLLATE "C" > %s ORDER BY user_id COLLATE "C"'
            " LIMIT %s"
        ).format(_USER_COLUMNS)
        return self._rows(UserRow, query, (coll.id, after or "", limit))

    def user_vectors(self, coll: CollectionRow, user_id: str) -> np.ndarray:
        """Vectors (N, D) of the user's faces, in label order."""
        self._hold(coll)
        rows = self._dicts(
            "SELECT vector FROM faces WHERE collection_id = %s AND user_id = %s ORDER BY label",
            (coll.id, user_id),
        )
        return np.array([blob_to_vector(r["vector"]) for r in rows], dtype=np.float32).reshape(
            len(rows), coll.dim
        )

    def set_face_user(self, coll: CollectionRow, labels: Sequence[int], user_id: str | None) -> None:
        """Associate faces with ``user_id`` (None disassociates)."""
        self._hold(coll)
        self.conn.execute(
            "UPDATE faces SET user_id = %s WHERE label = ANY(%s) AND collection_id = %s",
            (user_id, [int(x) for x in labels], coll.id),
        )
        self.changed.add(coll.id)

    def _store_user_summary(
        self, coll: CollectionRow, user_id: str, face_count: int, centroid: bytes | None
    ) -> None:
        self.conn.execute(
            "UPDATE users SET face_count = %s, centroid = %s WHERE collection_id = %s AND user_id = %s",
            (face_count, centroid, coll.id, user_id),
        )
        self.conn.execute(
            "UPDATE collections SET users_version = users_version + 1 WHERE id = %s", (coll.id,)
        )
        self.changed.add(coll.id)

    def user_centroid(self, coll: CollectionRow, user_id: str) -> Vector | None:
        """The centroid stored by refresh_user (None for a user without faces or no such user)."""
        self._hold(coll)
        rows = self._dicts(
            "SELECT centroid FROM users WHERE collection_id = %s AND user_id = %s", (coll.id, user_id)
        )
        return None if not rows or rows[0]["centroid"] is None else blob_to_vector(rows[0]["centroid"])

    def users_version(self, coll: CollectionRow) -> int:
        """A number that changes whenever the collection's users or their centroids change."""
        row = self.conn.execute("SELECT users_version FROM collections WHERE id = %s", (coll.id,)).fetchone()
        return int(row[0]) if row else -1

    def user_centroids(self, coll: CollectionRow) -> tuple[list[str], list[int], np.ndarray]:
        """(user ids, face counts, centroids (U, D)) of the users that have at least one face."""
        rows = self._dicts(
            "SELECT user_id, face_count, centroid FROM users WHERE collection_id = %s"
            ' AND centroid IS NOT NULL ORDER BY user_id COLLATE "C"',
            (coll.id,),
        )
        matrix = np.array([blob_to_vector(r["centroid"]) for r in rows], dtype=np.float32).reshape(
            len(rows), coll.dim
        )
        return [r["user_id"] for r in rows], [int(r["face_count"]) for r in rows], matrix

    # idempotency tokens --------------------------------------------------------------------------
    def find_token(self, coll: CollectionRow, operation: str, token: str) -> tuple[str, str] | None:
        """(request hash, stored response JSON) for a ClientRequestToken, or None."""
        self._hold(coll)
        row = self.conn.execute(
            "SELECT request_hash, response FROM tokens WHERE collection_id = %s AND operation = %s"
            " AND token = %s",
            (coll.id, operation, token),
        ).fetchone()
        return (str(row[0]), str(row[1])) if row else None

    def insert_token(
        self, coll: CollectionRow, operation: str, token: str, request_hash: str, response: str
    ) -> None:
        """Remember a ClientRequestToken with its request hash and response JSON."""
        self._hold(coll)
        self.conn.execute(
            "INSERT INTO tokens (collection_id, operation, token, request_hash, response, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (coll.id, operation, token, request_hash, response, time.time()),
        )


def _face(row: dict[str, Any]) -> FaceRow:
    return FaceRow(**{f.name: row[f.name] for f in fields(FaceRow)})


class PostgresDatabase:
    """A PostgreSQL database reached through a connection pool, with SQLite's Database methods.

    ``read()`` gives one REPEATABLE READ snapshot; ``write()`` is a READ COMMITTED transaction whose
    collections are row-locked as it touches them, committed when the block ends and rolled back
    on any exception. Opening checks the server (clear errors), then applies the migrations.
    """

    def __init__(self, url: str) -> None:
        if not is_postgres_url(url):
            raise ValueError(
                "the store setting (FACEPIPE_STORE) must be a postgresql:// URL, e.g. "
                f"postgresql://user:password@host:5432/facepipe; got {url.split('://')[0]!r}://..."
            )
        try:
            conninfo_to_dict(url)
        except psycopg.ProgrammingError:  # libpq's message quotes the URL's parts, password included
            raise InternalServerError("the store URL cannot be parsed (check its percent-encoding)") from None
        self.url = url
        self.where = redacted(url)
        self.schema_version = SCHEMA_VERSION
        self._closed = False
        try:
            first = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)
        except psycopg.Error as exc:
            raise _connect_error(self.where, exc) from None
        with first:
            try:
                self._migrate(first)
                row = first.execute("SELECT value FROM facepipe_meta WHERE key = 'store_id'").fetchone()
                copy_key = _database_identity(first)
            except psycopg.Error as exc:
                raise InternalServerError(
                    f"the PostgreSQL store {self.where} could not apply facepipe's schema: {_one_line(exc)}"
                ) from exc
        self.store_id = str(row[0]) if row else ""
        """The database's random UUID (facepipe_meta.store_id), copied with the database's contents."""
        self.snapshot_key = f"{self.store_id}-{copy_key}" if self.store_id else ""
        """Names this database's snapshots: the store_id and what tells a copy of the database
        (CREATE DATABASE ... TEMPLATE, a dump restored elsewhere) from the database itself."""
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=POOL_MIN,
            max_size=POOL_MAX,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            configure=_configure,
            timeout=POOL_TIMEOUT_S,
            name="facepipe-store",
            open=False,
        )
        self.pool.open(wait=False)
        self._next_sweep = 0.0

    # connections -------------------------------------------------------------------------------
    def _begin(
        self, begin: str | sql.Composed, args: Sequence[Any] = ()
    ) -> tuple[psycopg.Connection[Any], psycopg.Cursor[Any]]:
        """A pooled connection with ``begin`` (a statement safe to repeat: BEGIN, a query, VACUUM)
        executed, and its cursor; dead connections (a restarted server) are dropped and the attempt
        repeated (START_DELAYS_S)."""
        if self._closed:
            raise RuntimeError("the store is closed")
        last: BaseException | None = None
        for delay in START_DELAYS_S:
            if delay:
                time.sleep(delay)
            try:
                conn = self.pool.getconn()
            except PoolTimeout:
                raise InternalServerError(
                    f"no connection to the PostgreSQL store {self.where} within {POOL_TIMEOUT_S:.0f} s "
                    "(the server is unreachable, or every connection is busy); retry"
                ) from None
            try:
                return conn, conn.execute(begin, args or None)
            except psycopg.OperationalError as exc:
                last = exc
                self.pool.putconn(conn)  # a broken connection is discarded by the pool
            except BaseException:
                self.pool.putconn(conn)  # never leak it: the pool would run dry
                raise
        assert last is not None
        raise InternalServerError(
            f"the PostgreSQL store {self.where} is unreachable: {_one_line(last)}; retry"
        ) from last

    @contextmanager
    def _transaction(self, begin: str, writable: bool) -> Iterator[PostgresTx]:
        conn, _ = self._begin(begin)
        tx = PostgresTx(conn, writable)
        committing = False
        try:
            yield tx
            # the notifications and the commit in one round trip (no parameters: one simple query)
            notices = [
                sql.SQL("NOTIFY {}, {}; ").format(sql.Identifier(CHANNEL), sql.Literal(str(collection_id)))
                for collection_id in sorted(tx.changed)
            ]
            committing = True
            conn.execute(sql.Composed([*notices, sql.SQL("COMMIT")]))
        except BaseException as exc:
            if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, psycopg.Error):
                raise self._request_error(exc, committing and writable) from exc
            raise
        finally:
            self.pool.putconn(conn)

    def _request_error(self, exc: psycopg.Error, during_commit: bool) -> InternalServerError:
        text = _one_line(exc)
        if isinstance(exc, psycopg.OperationalError) and not _retryable(exc):
            outcome = (
                "the write may or may not have been committed" if during_commit else "nothing was committed"
            )
            return InternalServerError(
                f"the connection to the PostgreSQL store {self.where} was lost ({text}): {outcome}; retry"
            )
        if _retryable(exc):
            return InternalServerError(
                f"the PostgreSQL store aborted the transaction ({text}); nothing was committed; retry"
            )
        return InternalServerError(f"the PostgreSQL store {self.where} failed: {text}")

    @contextmanager
    def read(self) -> Iterator[PostgresTx]:
        """A read transaction: every query inside sees the same committed snapshot."""
        with self._transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", writable=False) as tx:
            yield tx

    @contextmanager
    def write(self) -> Iterator[PostgresTx]:
        """A write transaction: committed when the block ends without error, rolled back otherwise.
        Each collection it touches is row-locked for the rest of the transaction."""
        with self._transaction("BEGIN ISOLATION LEVEL READ COMMITTED", writable=True) as tx:
            yield tx

    # schema ------------------------------------------------------------------------------------
    def _migrate(self, conn: psycopg.Connection[Any]) -> int:
        """Bring the schema up to SCHEMA_VERSION in one transaction, tried up to RETRY_ATTEMPTS
        times on a serialization failure or deadlock; returns the version found. A database newer
        than this program is refused with InternalServerError."""
        for attempt in range(RETRY_ATTEMPTS):
            try:
                with conn.transaction():
                    return self._migrate_in(conn)
            except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
                if attempt == RETRY_ATTEMPTS - 1:
                    raise
                time.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")

    def _migrate_in(self, conn: psycopg.Connection[Any]) -> int:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_MIGRATION_KEY,))
        has_meta = conn.execute("SELECT to_regclass('facepipe_meta') IS NOT NULL").fetchone()
        found = 0
        if has_meta and has_meta[0]:
            row = conn.execute("SELECT value FROM facepipe_meta WHERE key = 'schema_version'").fetchone()
            stored = str(row[0]) if row else "0"
            try:
                found = int(stored)
            except ValueError:
                raise InternalServerError(
                    f"the PostgreSQL store {self.where} has schema version {stored!r}, not a number"
                ) from None
        if found > SCHEMA_VERSION:
            raise InternalServerError(
                f"the PostgreSQL store {self.where} has schema version {found}, written by a newer "
                f"facepipe; this facepipe reads schema versions up to {SCHEMA_VERSION}. Upgrade "
                "facepipe to open it."
            )
        for migration in MIGRATIONS:
            if migration.version > found:
                for statement in migration.statements():
                    conn.execute(statement.encode())
        if found < SCHEMA_VERSION:
            conn.execute(
                "INSERT INTO facepipe_meta (key, value) VALUES ('schema_version', %s)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
        return found

    # erasure -----------------------------------------------------------------------------------
    def erase_log(self) -> None:
        """VACUUM the tables that held deleted rows: their dead tuples are pruned from the heap
        pages and their index entries removed (see the module docstring for what remains)."""
        self._vacuum()

    def reclaim_space(self) -> None:
        """Nothing: erase_log's VACUUM, which follows, is all PostgreSQL does (it gives freed pages
        back to the file system only at the end of a table; facepipe never runs VACUUM FULL, which
        would lock the tables)."""

    def _vacuum(self) -> None:
        vacuum = sql.SQL("VACUUM {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in _VACUUMED_TABLES))
        try:
            conn, _ = self._begin(vacuum)  # autocommit: VACUUM cannot run in a transaction block
        except InternalServerError as exc:
            raise InternalServerError(
                f"the deletion is committed but VACUUM failed on the PostgreSQL store {self.where}: "
                f"{exc}; the next deletion (or autovacuum) prunes the rows"
            ) from exc
        self.pool.putconn(conn)

    def log_position_now(self, collection_id: int) -> tuple[int, int]:
        """(floor, head) of a collection's change log as of now, in one statement (no transaction);
        (0, 0) for a collection that does not exist."""
        conn, cur = self._begin(
            "SELECT (SELECT log_floor FROM collections WHERE id = %s),"
            " (SELECT max(seq) FROM changes WHERE collection_id = %s)",
            (collection_id, collection_id),
        )
        try:
            row = cur.fetchone()
        finally:
            self.pool.putconn(conn)
        return (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)

    # replay guard ------------------------------------------------------------------------------
    def remember_signature(self, signature: str, expires_at: float, now: float | None = None) -> bool:
        """Record a SigV4 signature until ``expires_at`` (Unix seconds; ``now``: the current time,
        time.time() when None); True when it is new (or its earlier record has expired), False when
        any server sharing the database has already seen it. Atomic across servers: of two servers
        recording the same signature at once, exactly one gets True. Expired records are deleted
        every SIGNATURE_SWEEP_S by each process.

        The record is committed without waiting for the WAL flush (synchronous_commit off): a
        database crash may forget the last fraction of a second of signatures, reopening a replay
        window of at most the clock-skew limit for requests signed then; every acknowledged write
        of face data still waits for its flush."""
        now = time.time() if now is None else now
        conn, _ = self._begin("BEGIN")
        try:
            conn.execute("SET LOCAL synchronous_commit = off")
            if now >= self._next_sweep:
                self._next_sweep = now + SIGNATURE_SWEEP_S
                conn.execute("DELETE FROM signatures WHERE expires_at < %s", (now,))
            cur = conn.execute(
                "INSERT INTO signatures (signature, expires_at) VALUES (%s, %s) ON CONFLICT (signature)"
                " DO UPDATE SET expires_at = excluded.expires_at WHERE signatures.expires_at < %s",
                (signature, expires_at, now),
            )
            fresh = cur.rowcount == 1
            conn.execute("COMMIT")
            return fresh
        except psycopg.Error as exc:
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")
            raise self._request_error(exc, during_commit=True) from exc
        finally:
            self.pool.putconn(conn)

    @property
    def durability(self) -> str:
        """The synchronous_commit of the pool's connections, as the server reports it (SHOW)."""
        conn, cursor = self._begin("SHOW synchronous_commit")
        try:
            row = cursor.fetchone()
        finally:
            self.pool.putconn(conn)
        return f"PostgreSQL synchronous_commit={row[0] if row else 'unknown'}"

    def close(self) -> None:
        """Close the pool's connections."""
        self._closed = True
        with contextlib.suppress(AttributeError):
            self.pool.close()


def _database_identity(conn: psycopg.Connection[Any]) -> str:
    """``<cluster system identifier>-<database oid>`` of the connected database: a copy made with
    CREATE DATABASE ... TEMPLATE gets another oid, a dump restored into another cluster another
    system identifier ("0" when this role may not read pg_control_system()). A physical copy (a
    promoted replica, a restored base backup) keeps both; the face-count check on loading a
    snapshot (SnapshotIndexes.current) is what catches those."""
    row = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()
    oid = str(row[0]) if row else "0"
    try:
        system = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
    except psycopg.Error:  # autocommit: the failed statement leaves the connection usable
        system = None
    return f"{system[0] if system else 0}-{oid}"


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Every pooled connection: commits wait for the WAL flush, whatever the server's default, and
    a writer waits at most LOCK_TIMEOUT for a collection's row lock."""
    conn.execute(
        f"SET synchronous_commit = on; SET lock_timeout = '{LOCK_TIMEOUT}'; SET application_name = 'facepipe'"
    )


class ChangeListener(threading.Thread):
    """LISTEN on CHANNEL in a daemon thread and hand each notified collection id to ``apply``.

    Reconnects after a lost connection (with a growing wait, at most 5 s) and then calls
    ``resync()`` (notifications sent while it was away are lost). The first connection calls
    ``first_sync()`` (when given) once LISTEN is in effect: what the process loaded before that
    heard of no change. ``latency`` records, for tests and
    benchmarks, the seconds from a notification's arrival to the end of its ``apply``.
    """

    def __init__(
        self,
        url: str,
        apply: Callable[[int], None],
        resync: Callable[[], None],
        first_sync: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name="facepipe-store-listener", daemon=True)
        self.url = url
        self.apply = apply
        self.resync = resync
        self.first_sync = first_sync
        self.stopping = threading.Event()
        self.listening = threading.Event()
        self.applied = 0
        self._conn: psycopg.Connection[Any] | None = None

    def run(self) -> None:
        wait = 0.1
        first = True
        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
                    self._conn = conn
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                    if not first:
                        self._resync()
                    elif self.first_sync is not None:
                        self._sync(self.first_sync)
                    first = False
                    self.listening.set()
                    wait = 0.1
                    while not self.stopping.is_set():
                        for note in conn.notifies(timeout=0.1):
                            self._handle(note.payload)
            except psycopg.Error as exc:
                self.listening.clear()
                if not self.stopping.is_set():
                    log.warning("store listener: %s; reconnecting in %.1f s", _one_line(exc), wait)
                    self.stopping.wait(wait)
                    wait = min(5.0, wait * 2)
            finally:
                self._conn = None

    def _handle(self, payload: str) -> None:
        try:
            collection_id = int(payload)
        except ValueError:
            return
        try:
            self.apply(collection_id)
            self.applied += 1
        except Exception:  # never let one bad apply stop the listener; searches catch up anyway
            log.exception("store listener: applying collection %s failed", collection_id)

    def _resync(self) -> None:
        """``resync()``, logged instead of raised when it fails."""
        self._sync(self.resync)

    @staticmethod
    def _sync(catch_up: Callable[[], None]) -> None:
        """``catch_up()``, logged instead of raised when it fails."""
        try:
            catch_up()
        except Exception:  # as _handle: the listener lives on; searches catch up anyway
            log.exception("store listener: catching up after connecting failed")

    def stop(self) -> None:
        """Stop listening and wait (at most 2 s) for the thread to end."""
        self.stopping.set()
        self.join(timeout=2.0)


class SharedReplayGuard:
    """pipeline.protocol.sigv4.ReplayGuard's ``accept`` on the shared database: a signature accepted
    by any server sharing it is a replay on all of them. It never answers "full" (the table is
    bounded by time: rows are swept once expired)."""

    def __init__(self, database: PostgresDatabase) -> None:
        self.database = database
        self.max_entries = 0
        """Unused (never "full"); kept for the verifier's message."""

    def accept(self, signature: bytes, expires_at: float, now: float) -> str:
        """ "new" (accepted and remembered) or "seen" (a replay) for a signature digest valid until
        ``expires_at`` (epoch s) at time ``now``."""
        return "new" if self.database.remember_signature(signature.hex(), expires_at, now) else "seen"


SNAPSHOT_FOLDER_PREFIX = "postgresql-"
"""Snapshot folders are named SNAPSHOT_FOLDER_PREFIX + PostgresDatabase.snapshot_key."""


def _remove_other_snapshot_folders(snapshot_dir: Path, keep: Path) -> None:
    """Remove the snapshot folders of other databases (or of this one under an older name): no
    process of this data directory keeps them free of that database's deletions."""
    if not snapshot_dir.is_dir():
        return
    for folder in snapshot_dir.glob(SNAPSHOT_FOLDER_PREFIX + "*"):
        if folder != keep and folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)


class SnapshotIndexes(IndexSet):
    """The IndexSet of a PostgreSQL store, whose saved files are this server's local snapshots.

    Rule kept here: a collection's snapshot file exists only while the index in memory is the
    file's index or a later state of it with no face removed since (``saved``); whenever
    ``current`` returns an index that is not (faces erased, or rebuilt because the snapshot was
    older than the compacted log), the file is removed first.
    """

    def __init__(self, index_dir: Path | None, ann_threshold: int = DEFAULT_ANN_THRESHOLD) -> None:
        super().__init__(index_dir, ann_threshold=ann_threshold, saved_kinds=("flat", "pq"))
        self.loads = 0
        """How many indexes were opened from a snapshot file."""
        self.file_seqs: dict[int, int] = {}
        """Per collection: the change-log position of its snapshot file, as written or read here."""

    def current(self, tx: Any, coll: CollectionRow) -> CollectionIndex:
        """The collection's index brought up to the snapshot of ``tx`` (lock_for held). An index
        just opened from its snapshot whose face count then differs from the database's (a
        database restored from a backup, or a physical copy, at the same log position with other
        faces) is rebuilt from the database instead."""
        loads = self.loads
        idx = super().current(tx, coll)
        if self.loads > loads and idx.live_count != tx.face_count(coll):
            log.warning(
                "collection %s: its snapshot holds %d faces after the replay, the database %d;"
                " snapshot discarded, index rebuilt from the database",
                coll.name,
                idx.live_count,
                tx.face_count(coll),
            )
            self.loads -= 1
            idx = self._rebuild(tx, coll, tx.log_position(coll)[1], idx)
            self._indexes[coll.id] = idx
        if not idx.saved:
            self.drop_snapshot(coll.id)
        return idx

    def _load(self, coll: CollectionRow, floor: int, head: int) -> CollectionIndex | None:
        idx = super()._load(coll, floor, head)
        if idx is not None:
            self.loads += 1
            self.file_seqs[coll.id] = idx.applied_seq
        return idx

    def save(self, idx: CollectionIndex) -> None:
        """Write the index as its collection's snapshot (0600, atomically)."""
        super().save(idx)
        if idx.saved:
            self.file_seqs[idx.collection_id] = idx.applied_seq

    def purge_saved(self, collection_id: int) -> None:
        """Remove the collection's snapshot file and any half-written one."""
        self.file_seqs.pop(collection_id, None)
        super().purge_saved(collection_id)

    def is_saved(self, idx: CollectionIndex) -> bool:
        """Whether the snapshot file holds exactly ``idx`` (same faces, same log position)."""
        return idx.saved and self.file_seqs.get(idx.collection_id) == idx.applied_seq

    def _snapshot_path(self, collection_id: int) -> Path | None:
        return None if self.index_dir is None else self.index_dir / f"collection-{collection_id}.faiss"

    def has_snapshot(self, collection_id: int) -> bool:
        """Whether a snapshot file of the collection exists."""
        path = self._snapshot_path(collection_id)
        return path is not None and path.is_file()

    def drop_snapshot(self, collection_id: int) -> None:
        """Remove the collection's snapshot file (nothing when there is none)."""
        path = self._snapshot_path(collection_id)
        self.file_seqs.pop(collection_id, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def remove_half_written(self) -> None:
        """Remove every half-written snapshot (left by a process killed while saving; a save in
        progress in another process sharing the folder then finds its file gone and gives up)."""
        if self.index_dir is None or not self.index_dir.is_dir():
            return
        for path in self.index_dir.glob(TEMP_PREFIX + "*"):
            path.unlink(missing_ok=True)

    def snapshot_ids(self) -> list[int]:
        """The collection ids that have a snapshot file, in id order."""
        if self.index_dir is None or not self.index_dir.is_dir():
            return []
        ids = []
        for path in self.index_dir.glob("collection-*.faiss"):
            with contextlib.suppress(ValueError):
                ids.append(int(path.name[len("collection-") : -len(".faiss")]))
        return sorted(ids)


class PostgresStore(IndexedStore):
    """The FaceStore on PostgreSQL: pipeline.store.IndexedStore (FAISS per collection in memory,
    centroid cache, erasure after deleting writes) on a :class:`PostgresDatabase`, plus the change
    listener, the shared SigV4 replay guard and local index snapshots.

    Local snapshots (``snapshot_dir``, a folder of the server's data directory; None: none): an
    index of at least ``snapshot_min_faces`` faces is saved there (0600, atomically, with the
    change-log position it reflects) when the store closes and when a quantized index has been
    built. Opening loads every snapshot and replays only the change log after its position; a
    snapshot older than the log's compacted floor, of a collection that no longer exists (ids are
    never reused in a database), whose face count after the replay differs from the database's,
    or of another database (the folder is named by PostgresDatabase.snapshot_key; other folders
    are removed) is removed and the index built from the database instead. Erasure: a snapshot
    never keeps a face this process knows deleted: the server that deletes removes the file
    inside the deleting transaction and again, if a save raced it, when it erases its index after
    the commit; the others remove theirs when they apply the deletion (the notification, the
    listener's first catch-up, or its catch-up after a reconnection); close() removes the files
    that a deletion committed after their save makes stale once the listener has stopped; a
    server that was stopped (or killed, half-written files included) removes them when it
    starts, before serving.
    """

    def __init__(
        self,
        url: str,
        ann_threshold: int = DEFAULT_ANN_THRESHOLD,
        listen: bool = True,
        snapshot_dir: Path | None = None,
        snapshot_min_faces: int = SNAPSHOT_MIN_FACES,
    ) -> None:
        self.database = PostgresDatabase(url)
        self.snapshot_dir = None if snapshot_dir is None else Path(snapshot_dir)
        index_dir = None
        if self.snapshot_dir is not None and self.database.snapshot_key:
            index_dir = self.snapshot_dir / f"{SNAPSHOT_FOLDER_PREFIX}{self.database.snapshot_key}"
            _remove_other_snapshot_folders(self.snapshot_dir, keep=index_dir)
        self.indexes: SnapshotIndexes
        # PostgresTx has db.Tx's methods, which is what the indexes and IndexedStore call
        super().__init__(self.database, SnapshotIndexes(index_dir, ann_threshold=ann_threshold))  # type: ignore[arg-type]
        self.snapshot_min_faces = snapshot_min_faces
        self.indexes.remove_half_written()
        self.listener: ChangeListener | None = None
        if listen:
            self.listener = ChangeListener(url, self._apply_change, self._resync, self._apply_held)
            self.listener.start()
        if self.indexes.snapshot_ids():
            if self.listener is not None:  # hear deletions committed while the snapshots load
                self.listener.listening.wait(CONNECT_TIMEOUT_S)
            self._open_snapshots()

    def remember_signature(self, signature: str, expires_at: float, now: float | None = None) -> bool:
        """See PostgresDatabase.remember_signature (the SigV4 replay guard shared by all servers)."""
        return self.database.remember_signature(signature, expires_at, now)

    def replay_guard(self) -> SharedReplayGuard:
        """A SigV4 replay guard on this store, shared by every server on the database."""
        return SharedReplayGuard(self.database)

    def search(
        self, coll: CollectionRow, vector: np.ndarray, k: int, min_cosine: float
    ) -> list[tuple[int, float]]:
        """Up to ``k`` (label, cosine) with cosine >= min_cosine, best first, as of everything
        committed before the call. When this process's index is already at the log's head (one
        statement tells) it is searched at once; otherwise the SQLite store's path catches it up
        in a snapshot first."""
        with self.indexes.lock_for(coll.id):
            held = next((i for i in self.indexes.cached() if i.collection_id == coll.id), None)
            if held is not None:
                floor, head = self.database.log_position_now(coll.id)
                if floor <= held.applied_seq == head:
                    return self.indexes.search(held, vector, k, min_cosine)
        return super().search(coll, vector, k, min_cosine)

    def _apply_change(self, collection_id: int) -> None:
        """A write committed on ``collection_id`` (by any process): drop its cached centroids, and
        forget its index and snapshot (collection deleted) or catch the index up (erasing deleted
        faces, and removing the snapshot when it held one). A snapshot of a collection not in
        memory is opened for that (so that a deletion cannot stay in it)."""
        self._drop_centroids(collection_id)
        if not self.indexes.holds(collection_id) and not self.indexes.has_snapshot(collection_id):
            return
        with self.indexes.lock_for(collection_id), self.read() as tx:
            coll = tx.find_collection_by_id(collection_id)
            if coll is None:
                self.indexes.forget(collection_id)
            else:
                self.indexes.current(tx, coll)  # PostgresTx has db.Tx's methods

    def _apply_held(self) -> None:
        """Once the listener first listens: apply every collection held in memory (changes
        committed between its catch-up and LISTEN were not notified to this process)."""
        for collection_id in sorted(idx.collection_id for idx in self.indexes.cached()):
            self._apply_change(collection_id)

    def _resync(self) -> None:
        """After the listener reconnects: apply every held collection and every snapshot
        (notifications were missed)."""
        self._drop_centroids(None)
        held = {idx.collection_id for idx in self.indexes.cached()}
        for collection_id in sorted(held | set(self.indexes.snapshot_ids())):
            self._apply_change(collection_id)

    @property
    def snapshots_loaded(self) -> int:
        """How many indexes this store opened from a local snapshot."""
        return self.indexes.loads

    def _open_snapshots(self) -> None:
        """Open every snapshot file: load it and replay the change log after its position, or
        remove it (collection gone, snapshot older than the compacted log, unreadable)."""
        for collection_id in self.indexes.snapshot_ids():
            started = time.perf_counter()
            loads = self.indexes.loads
            with self.indexes.lock_for(collection_id), self.read() as tx:
                coll = tx.find_collection_by_id(collection_id)
                if coll is None:
                    self.indexes.forget(collection_id)
                    log.info("snapshot of deleted collection %s removed", collection_id)
                    continue
                idx = self.indexes.current(tx, coll)
            if self.indexes.loads > loads:
                log.info(
                    "collection %s: index of %d faces opened from its snapshot in %.2f s",
                    coll.name,
                    idx.live_count,
                    time.perf_counter() - started,
                )
            else:
                log.info("collection %s: snapshot discarded, index rebuilt from the database", coll.name)

    def _save_if_due(self, idx: CollectionIndex) -> None:
        """Save a quantized index just built as a snapshot (call with its lock held)."""
        if idx.save_due:
            idx.save_due = False
            self._save_snapshot(idx)

    def _save_snapshot(self, idx: CollectionIndex) -> None:
        """Write ``idx`` as its collection's snapshot when snapshots are on, it is large enough and
        the file does not already hold exactly it (call with lock_for held, idx just caught up: a
        deletion committed after the catch-up removes the file when it is applied)."""
        if self.snapshot_dir is None or idx.live_count < self.snapshot_min_faces:
            return
        if self.indexes.is_saved(idx):
            return
        if not self.snapshot_dir.parent.exists():  # the data directory, owner-only as the rest
            private_directory(self.snapshot_dir.parent)
        private_directory(self.snapshot_dir)
        self.indexes.save(idx)

    def save_snapshots(self) -> None:
        """Bring every index held in memory up to date and save it as a snapshot (see the class
        docstring); a deleted collection's index is forgotten instead."""
        if self.snapshot_dir is None:
            return
        for held in self.indexes.cached():
            with self.indexes.lock_for(held.collection_id):
                with self.read() as tx:
                    coll = tx.find_collection_by_id(held.collection_id)
                    if coll is None:
                        self.indexes.forget(held.collection_id)
                        continue
                    idx = self.indexes.current(tx, coll)
                self._save_snapshot(idx)

    def drop_snapshots_missing_removals(self) -> None:
        """Remove every snapshot file of this process that a removal committed after its position
        (or the collection's deletion) makes stale: close() runs it once the listener has
        stopped, for the deletions committed after the saves that no notification applied."""
        for collection_id, seq in sorted(self.indexes.file_seqs.items()):
            with self.database.read() as tx:
                stale = tx.removed_since(collection_id, seq)
            if stale:
                self.indexes.drop_snapshot(collection_id)

    def close(self) -> None:
        """Save the snapshots (when on), stop the listener, remove the snapshots a deletion
        committed meanwhile made stale, and close the pool. A deletion committed after that is
        applied when this server starts again (before it serves)."""
        try:
            self.save_snapshots()
        except (InternalServerError, OSError):
            log.exception("saving the index snapshots failed; the next start rebuilds those indexes")
        finally:
            if self.listener is not None:
                self.listener.stop()
            try:
                self.drop_snapshots_missing_removals()
            except InternalServerError:
                log.exception("checking the index snapshots failed; the next start checks them")
            finally:
                self.database.close()


if TYPE_CHECKING:  # mypy checks that the PostgreSQL backend keeps the store contract
    _POSTGRES_STORE_IS_A_FACE_STORE: type[FaceStore] = PostgresStore
    _POSTGRES_TX_IS_A_STORE_TRANSACTION: type[StoreTransaction] = PostgresTx
