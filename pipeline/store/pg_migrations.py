"""The PostgreSQL schema as numbered migrations, applied in order when the store is opened.

The same tables as the SQLite schema (pipeline.store.migrations), in PostgreSQL types: labels and
change-log positions are identity columns (a sequence: monotonic, never reused), vectors and
centroids are float32 little-endian ``bytea`` stored ``PLAIN`` (in the row itself: never compressed,
never moved out to a TOAST table, so a deleted vector has one place in the heap to be vacuumed from).
Two tables exist only here: ``facepipe_meta`` holds ``schema_version`` (the last migration applied)
and ``store_id`` (a random UUID naming this database in servers' local index snapshots: a database
dropped and created again gets a new one), and ``signatures`` the SigV4 signatures seen by any
server sharing the database (the replay guard).

Opening takes a transaction-level advisory lock, so servers that start together migrate once; a
database whose version is newer than the last migration known here was written by a newer facepipe
and is refused (InternalServerError naming both numbers). Add a change as a new entry at the end,
never by editing one that has shipped.
"""

from __future__ import annotations

from pipeline.store.migrations import Migration

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial",
        """
CREATE TABLE facepipe_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE collections (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE,
    arn text NOT NULL,
    created_at double precision NOT NULL,
    model_version text NOT NULL,
    dim integer NOT NULL,
    face_count bigint NOT NULL DEFAULT 0,
    user_count bigint NOT NULL DEFAULT 0,
    users_version bigint NOT NULL DEFAULT 0,
    log_floor bigint NOT NULL DEFAULT 0,
    tags text NOT NULL DEFAULT '{}'
);
CREATE TABLE faces (
    label bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection_id bigint NOT NULL,
    face_id text NOT NULL UNIQUE,
    image_id text NOT NULL,
    external_image_id text,
    dedup_key text NOT NULL,
    box_left double precision NOT NULL,
    box_top double precision NOT NULL,
    box_width double precision NOT NULL,
    box_height double precision NOT NULL,
    confidence double precision NOT NULL,
    user_id text,
    created_at double precision NOT NULL,
    vector bytea NOT NULL
);
ALTER TABLE faces ALTER COLUMN vector SET STORAGE PLAIN;
CREATE INDEX faces_by_collection ON faces (collection_id, label);
CREATE INDEX faces_by_dedup ON faces (collection_id, dedup_key);
CREATE INDEX faces_by_user ON faces (collection_id, user_id) WHERE user_id IS NOT NULL;
CREATE TABLE users (
    collection_id bigint NOT NULL,
    user_id text NOT NULL,
    created_at double precision NOT NULL,
    face_count integer NOT NULL DEFAULT 0,
    centroid bytea,
    PRIMARY KEY (collection_id, user_id)
);
ALTER TABLE users ALTER COLUMN centroid SET STORAGE PLAIN;
CREATE TABLE changes (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection_id bigint NOT NULL,
    label bigint NOT NULL,
    added smallint NOT NULL
);
CREATE INDEX changes_by_collection ON changes (collection_id, seq);
CREATE TABLE tokens (
    collection_id bigint NOT NULL,
    operation text NOT NULL,
    token text NOT NULL,
    request_hash text NOT NULL,
    response text NOT NULL,
    created_at double precision NOT NULL,
    PRIMARY KEY (collection_id, operation, token)
);
CREATE TABLE signatures (signature text PRIMARY KEY, expires_at double precision NOT NULL);
CREATE INDEX signatures_by_expiry ON signatures (expires_at)
""",
    ),
    Migration(
        2,
        "store id",
        """
INSERT INTO facepipe_meta (key, value) VALUES ('store_id', gen_random_uuid()::text) ON CONFLICT (key) DO NOTHING
""",
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version
"""The PostgreSQL schema version this program writes (the last migration's number)."""
