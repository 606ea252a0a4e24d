"""The job ledger: what a folder job has already indexed, so a rerun skips it and a crash loses nothing.

One SQLite database (``jobs.sqlite3`` in the data directory) shared by all jobs. A job is a
(collection, folder) pair; each of its files has one row keyed by its relative path:

- ``pending``: the file's faces are about to be written (or were written just before a crash).
  The row is committed *before* the store transaction, so after a crash every file whose faces
  may be in the store without being acknowledged here is known; the next run deletes the faces
  that carry its ExternalImageId and indexes it again, so nothing is ever duplicated.
- ``done``: the faces are in the store; ``face_ids`` and the report line are recorded. A rerun
  skips the file while its content sha256 is unchanged.
- ``failed``: the file could not be read or decoded; a rerun tries it again.

Every row also keeps the file's ExternalImageId, so an id, once given, stays with its file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.store.files import make_private, private_directory, private_file

LEDGER_FILE_NAME = "jobs.sqlite3"
"""The ledger's file name inside the data directory."""

PENDING = "pending"
DONE = "done"
FAILED = "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id INTEGER PRIMARY KEY,
    collection_id TEXT NOT NULL,
    root TEXT NOT NULL,
    collection_created TEXT NOT NULL,
    UNIQUE (collection_id, root)
);
CREATE TABLE IF NOT EXISTS files (
    job_id INTEGER NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    rel_path TEXT NOT NULL,
    external_image_id TEXT NOT NULL,
    sha256 TEXT,
    state TEXT NOT NULL,
    face_ids TEXT NOT NULL DEFAULT '[]',
    replaced_face_ids TEXT NOT NULL DEFAULT '[]',
    result TEXT,
    PRIMARY KEY (job_id, rel_path)
);
CREATE INDEX IF NOT EXISTS files_by_external_id ON files (job_id, external_image_id);
"""


@dataclass(frozen=True)
class LedgerEntry:
    """One file's row: its id, content hash, state, FaceIds in the store and recorded report line."""

    rel_path: str
    external_image_id: str
    sha256: str | None
    state: str
    face_ids: tuple[str, ...]
    replaced_face_ids: tuple[str, ...]
    result: dict[str, Any] | None


@dataclass(frozen=True)
class PendingWrite:
    """A file about to be written: ``replaced_face_ids`` are the faces of its previous content."""

    rel_path: str
    external_image_id: str
    sha256: str
    replaced_face_ids: tuple[str, ...]


@dataclass(frozen=True)
class FinishedFile:
    """A file whose outcome is final for this run (state DONE or FAILED) and its report line."""

    rel_path: str
    external_image_id: str
    sha256: str | None
    state: str
    face_ids: tuple[str, ...]
    result: dict[str, Any]


def _stored_path(path: str) -> str | bytes:
    """``path`` as stored: text, or the raw bytes (a BLOB) of a name that is not valid UTF-8
    (Python holds such names with surrogate escapes, which SQLite's text cannot carry)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape")
    return path


def _loaded_path(value: str | bytes) -> str:
    """A stored path back as Python names it (the inverse of _stored_path)."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _entry(row: sqlite3.Row) -> LedgerEntry:
    return LedgerEntry(
        rel_path=_loaded_path(row["rel_path"]),
        external_image_id=row["external_image_id"],
        sha256=row["sha256"],
        state=row["state"],
        face_ids=tuple(json.loads(row["face_ids"])),
        replaced_face_ids=tuple(json.loads(row["replaced_face_ids"])),
        result=json.loads(row["result"]) if row["result"] else None,
    )


class JobLedger:
    """The ledger database; use one instance per thread (it holds one SQLite connection)."""

    def __init__(self, path: Path) -> None:
        # owner-only like the store: SQLite gives its -wal and -shm files the database file's mode
        private_directory(path.parent)
        self.path = private_file(path)
        for suffix in ("-wal", "-shm"):
            make_private(path.with_name(path.name + suffix))
        self._db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> JobLedger:
        """The ledger kept in ``data_dir``."""
        return cls(data_dir / LEDGER_FILE_NAME)

    def lock_file(self, job_id: int) -> Path:
        """The job's lock file beside the ledger (created 0600 if missing), for one run at a time."""
        return private_file(self.path.with_name(f"{self.path.name}.job{job_id}.lock"))

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> JobLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, statements: Iterable[tuple[str, tuple[Any, ...]]]) -> None:
        """Run ``statements`` as one durable transaction."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                self._db.execute(sql, params)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def open_job(self, collection_id: str, root: str, collection_created: str) -> int:
        """The job id for (collection, folder), forgetting its files if the collection was re-created.

        ``collection_created`` identifies the collection's incarnation (its creation timestamp):
        when a collection of the same name was deleted and created again, the faces the ledger
        remembers are gone, so every file is indexed again.
        """
        row = self._db.execute(
            "SELECT job_id, collection_created FROM jobs WHERE collection_id = ? AND root = ?",
            (collection_id, _stored_path(root)),
        ).fetchone()
        if row is None:
            self._write(
                [
                    (
                        "INSERT OR IGNORE INTO jobs (collection_id, root, collection_created) VALUES (?, ?, ?)",
                        (collection_id, _stored_path(root), collection_created),
                    )
                ]
            )
            return self.open_job(collection_id, root, collection_created)
        job_id = int(row["job_id"])
        if row["collection_created"] != collection_created:
            self._write(
                [
                    ("DELETE FROM files WHERE job_id = ?", (job_id,)),
                    ("UPDATE jobs SET collection_created = ? WHERE job_id = ?", (collection_created, job_id)),
                ]
            )
        return job_id

    def get(self, job_id: int, rel_path: str) -> LedgerEntry | None:
        """The row of ``rel_path``, or None when the job has never seen the file."""
        row = self._db.execute(
            "SELECT * FROM files WHERE job_id = ? AND rel_path = ?", (job_id, _stored_path(rel_path))
        ).fetchone()
        return _entry(row) if row is not None else None

    def holder_of(self, job_id: int, external_image_id: str) -> str | None:
        """The relative path of the file that holds ``external_image_id`` in this job, if any."""
        row = self._db.execute(
            "SELECT rel_path FROM files WHERE job_id = ? AND external_image_id = ? LIMIT 1",
            (job_id, external_image_id),
        ).fetchone()
        return None if row is None else _loaded_path(row["rel_path"])

    def entries(self, job_id: int, state: str | None = None) -> Iterator[LedgerEntry]:
        """The job's rows (optionally only those in ``state``), ordered by relative path."""
        if state is None:
            cursor = self._db.execute("SELECT * FROM files WHERE job_id = ? ORDER BY rel_path", (job_id,))
        else:
            cursor = self._db.execute(
                "SELECT * FROM files WHERE job_id = ? AND state = ? ORDER BY rel_path", (job_id, state)
            )
        for row in cursor.fetchall():
            yield _entry(row)

    def mark_pending(self, job_id: int, writes: Iterable[PendingWrite]) -> None:
        """Record, durably and before the store is touched, the files whose faces will be written."""
        self._write(
            (
                """INSERT INTO files (job_id, rel_path, external_image_id, sha256, state, replaced_face_ids)
                   VALUES (?, ?, ?, ?, 'pending', ?)
                   ON CONFLICT (job_id, rel_path) DO UPDATE SET
                       external_image_id = excluded.external_image_id, sha256 = excluded.sha256,
                       state = 'pending', replaced_face_ids = excluded.replaced_face_ids""",
                (
                    job_id,
                    _stored_path(w.rel_path),
                    w.external_image_id,
                    w.sha256,
                    json.dumps(list(w.replaced_face_ids)),
                ),
            )
            for w in writes
        )

    def finish(self, job_id: int, files: Iterable[FinishedFile]) -> None:
        """Record final outcomes (DONE with FaceIds, or FAILED) in one transaction."""
        self._write(
            (
                """INSERT INTO files (job_id, rel_path, external_image_id, sha256, state, face_ids,
                                      replaced_face_ids, result)
                   VALUES (?, ?, ?, ?, ?, ?, '[]', ?)
                   ON CONFLICT (job_id, rel_path) DO UPDATE SET
                       external_image_id = excluded.external_image_id, sha256 = excluded.sha256,
                       state = excluded.state, face_ids = excluded.face_ids,
                       replaced_face_ids = '[]', result = excluded.result""",
                (
                    job_id,
                    _stored_path(f.rel_path),
                    f.external_image_id,
                    f.sha256,
                    f.state,
                    json.dumps(list(f.face_ids)),
                    json.dumps(f.result, sort_keys=True),
                ),
            )
            for f in files
        )

    def face_ids_held_elsewhere(self, collection_id: str, external_image_ids: Iterable[str]) -> set[str]:
        """FaceIds that non-pending rows (of any job on the collection) record for these ExternalImageIds."""
        wanted = sorted(set(external_image_ids))
        held: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = self._db.execute(
                f"""SELECT files.face_ids FROM files JOIN jobs USING (job_id)
                    WHERE jobs.collection_id = ? AND files.state != 'pending'
                      AND files.external_image_id IN ({marks})""",
                (collection_id, *chunk),
            ).fetchall()
            for row in rows:
                held.update(json.loads(row["face_ids"]))
        return held

    def counts(self, job_id: int) -> dict[str, int]:
        """Number of the job's files in each state."""
        rows = self._db.execute(
            "SELECT state, COUNT(*) AS n FROM files WHERE job_id = ? GROUP BY state", (job_id,)
        ).fetchall()
        return {str(r["state"]): int(r["n"]) for r in rows}
