"""The SQLite schema as numbered migrations, applied in order when a store is opened.

A store records the number of the last migration applied in ``meta.schema_version``. Opening
applies the missing ones, each in the opening write transaction; a store whose number is higher
than the last one known here was written by a newer facepipe and is refused (InternalServerError
naming both numbers), so an older program never writes into a schema it does not understand.

Add a change as a new entry at the end, never by editing one that has shipped: stores in the field
already hold its effects. Migration 1 is the schema every store has had since the first release
(its ``IF NOT EXISTS`` clauses make it a no-op on those stores).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from pipeline.errors import InternalServerError


@dataclass(frozen=True)
class Migration:
    """One schema step: ``version`` (1, 2, ...), a short name, and its SQL statements."""

    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The SQL split into single statements (the schema uses no ';' inside a statement)."""
        return [s.strip() for s in self.sql.split(";") if s.strip()]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial",
        """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS collections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    arn TEXT NOT NULL,
    created_at REAL NOT NULL,
    model_version TEXT NOT NULL,
    dim INTEGER NOT NULL,
    face_count INTEGER NOT NULL DEFAULT 0,
    user_count INTEGER NOT NULL DEFAULT 0,
    users_version INTEGER NOT NULL DEFAULT 0,
    log_floor INTEGER NOT NULL DEFAULT 0,
    tags TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS faces (
    label INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL,
    face_id TEXT NOT NULL UNIQUE,
    image_id TEXT NOT NULL,
    external_image_id TEXT,
    dedup_key TEXT NOT NULL,
    box_left REAL NOT NULL, box_top REAL NOT NULL, box_width REAL NOT NULL, box_height REAL NOT NULL,
    confidence REAL NOT NULL,
    user_id TEXT,
    created_at REAL NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_by_collection ON faces (collection_id, label);
CREATE INDEX IF NOT EXISTS faces_by_dedup ON faces (collection_id, dedup_key);
CREATE INDEX IF NOT EXISTS faces_by_user ON faces (collection_id, user_id) WHERE user_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS users (
    collection_id INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    face_count INTEGER NOT NULL DEFAULT 0,
    centroid BLOB,
    PRIMARY KEY (collection_id, user_id)
);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL,
    label INTEGER NOT NULL,
    added INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_collection ON changes (collection_id, seq);
CREATE TABLE IF NOT EXISTS tokens (
    collection_id INTEGER NOT NULL,
    operation TEXT NOT NULL,
    token TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (collection_id, operation, token)
);
""",
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version
"""The schema version this program writes (the last migration's number)."""


def stored_version(conn: sqlite3.Connection) -> int:
    """The store's ``meta.schema_version``; 0 for a new, empty database."""
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if not has_meta:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        return 0
    try:
        return int(row[0])
    except (TypeError, ValueError):
        raise InternalServerError(f"the store's schema version {row[0]!r} is not a number") from None


def migrate(conn: sqlite3.Connection, where: str) -> int:
    """Bring the schema up to SCHEMA_VERSION inside the caller's write transaction; returns the
    version found. A store newer than this program is refused with InternalServerError."""
    found = stored_version(conn)
    if found > SCHEMA_VERSION:
        raise InternalServerError(
            f"the store in {where} has schema version {found}, written by a newer facepipe; this "
            f"facepipe reads schema versions up to {SCHEMA_VERSION}. Upgrade facepipe to open it."
        )
    for migration in MIGRATIONS:
        if migration.version > found:
            for statement in migration.statements():
                conn.execute(statement)
    if found < SCHEMA_VERSION:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
    return found
