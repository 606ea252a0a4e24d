"""The schema as numbered migrations: new stores get them all, stores written by the previous
version open unchanged, and a store written by a newer version is refused with a clear error."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.errors import InternalServerError
from pipeline.service import FacePipe
from pipeline.store import Store, normalized_mean
from pipeline.store.migrations import MIGRATIONS, SCHEMA_VERSION
from tests.support.synthetic_faces import LinearEngine

OLD_STORE_DUMP = Path(__file__).with_name("data") / "store-0bc5b53.sql"
"""sqlite3 iterdump() of a store written by facepipe at commit 0bc5b53 (schema version 1): one
collection with five faces (one more indexed, then deleted), user "u" with three of them (made with
ClientRequestToken "t1"), and an empty collection."""


def restore_old_store(home: Path) -> Path:
    home.mkdir(parents=True)
    path = home / "facepipe.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(OLD_STORE_DUMP.read_text())
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    return path


def schema_of(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        conn.close()


def version_of(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    finally:
        conn.close()


def pipe(home: Path) -> FacePipe:
    return FacePipe(Settings(data_dir=home, cache_dir=home.parent / "cache"), engine=LinearEngine())


def test_migrations_are_numbered_one_by_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert MIGRATIONS[-1].version == SCHEMA_VERSION


def test_a_new_store_gets_every_migration(tmp_path: Path) -> None:
    Store(tmp_path).close()
    path = tmp_path / "facepipe.sqlite3"
    assert version_of(path) == str(SCHEMA_VERSION)
    tables = {name for name, _ in schema_of(path)}
    assert {"meta", "collections", "faces", "users", "changes", "tokens"} <= tables


def test_a_store_written_by_the_previous_version_opens_unchanged(tmp_path: Path) -> None:
    path = restore_old_store(tmp_path / "home")
    schema_before = schema_of(path)
    fp = pipe(tmp_path / "home")
    faces = fp.call("ListFaces", {"CollectionId": "c"})["Faces"]
    assert len(faces) == 5
    assert sum(f.get("UserId") == "u" for f in faces) == 3
    assert fp.call("ListUsers", {"CollectionId": "c"})["Users"] == [{"UserId": "u", "UserStatus": "ACTIVE"}]
    assert fp.call("DescribeCollection", {"CollectionId": "c"})["FaceCount"] == 5
    assert fp.call("ListCollections", {})["CollectionIds"] == ["c", "empty"]
    # the token stored by the old version still replays, and nothing changes
    assert fp.call("CreateUser", {"CollectionId": "c", "UserId": "u", "ClientRequestToken": "t1"}) == {}
    # the centroid the old version stored is the one AssociateFaces compares with: the fourth face
    # of u's person matches, the other person's face does not, with the Confidence computed here
    loose = [f["FaceId"] for f in faces if "UserId" not in f]
    conn = sqlite3.connect(path)
    vectors = {
        face_id: np.frombuffer(blob, dtype="<f4")
        for face_id, blob in conn.execute("SELECT face_id, vector FROM faces WHERE collection_id = 1")
    }
    conn.close()
    centroid = normalized_mean(np.stack([vectors[f["FaceId"]] for f in faces if f.get("UserId") == "u"]))
    assert centroid is not None
    out = fp.call("AssociateFaces", {"CollectionId": "c", "UserId": "u", "FaceIds": loose})
    assert out["AssociatedFaces"] == [{"FaceId": loose[0]}]
    (refused,) = out["UnsuccessfulFaceAssociations"]
    assert refused["FaceId"] == loose[1] and refused["Reasons"] == ["LOW_MATCH_CONFIDENCE"]
    assert refused["Confidence"] == pytest.approx(
        max(0.0, 100 * float(vectors[loose[1]] @ centroid)), abs=1e-4
    )
    search = fp.call(
        "SearchUsers", {"CollectionId": "c", "FaceId": faces[0]["FaceId"], "UserMatchThreshold": 50}
    )
    assert [m["User"]["UserId"] for m in search["UserMatches"]] == ["u"]
    fp.close()
    assert schema_of(path) == schema_before
    assert version_of(path) == "1"


def test_a_store_from_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    path = restore_old_store(tmp_path / "home")
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(InternalServerError, match=f"schema version {SCHEMA_VERSION + 1}.*newer facepipe"):
        Store(tmp_path / "home")
    fp = pipe(tmp_path / "home")
    with pytest.raises(InternalServerError, match="Upgrade facepipe"):
        fp.call("ListCollections", {})
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert version_of(path) == str(SCHEMA_VERSION + 1)


def test_a_store_with_a_garbled_version_is_refused(tmp_path: Path) -> None:
    path = restore_old_store(tmp_path / "home")
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = 'one' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(InternalServerError, match="not a number"):
        Store(tmp_path / "home")
