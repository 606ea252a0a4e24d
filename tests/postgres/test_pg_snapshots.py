"""Local index snapshots of the PostgreSQL store: a store that opens again loads its indexes from the
snapshot and replays only the change log after it; stale snapshots (compacted log, deleted or
recreated collection) are discarded; no snapshot keeps a deleted face."""

from __future__ import annotations

import stat
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from pipeline.store import NewFace
from pipeline.store.db import vector_to_blob
from pipeline.store.postgres import PostgresStore
from pipeline.store.records import CollectionRow

DIM = 16


def _open(url: str, snapshots: Path, ann_threshold: int = 1000, listen: bool = False) -> PostgresStore:
    return PostgresStore(
        url, ann_threshold=ann_threshold, listen=listen, snapshot_dir=snapshots, snapshot_min_faces=1
    )


def _vectors(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _add(store: PostgresStore, name: str, vectors: np.ndarray) -> list[int]:
    """Index ``vectors`` into collection ``name`` (created when missing); returns their labels."""
    with store.write() as tx:
        coll = tx.find_collection(name) or tx.insert_collection(name, f"arn:{name}", "t", DIM, {})
        return [
            tx.insert_face(
                coll,
                NewFace(str(uuid.uuid4()), str(uuid.uuid4()), None, f"k{i}", 0, 0, 1, 1, 99.0, vector),
            )
            for i, vector in enumerate(vectors)
        ]


def _delete(store: PostgresStore, name: str, labels: list[int]) -> None:
    with store.write() as tx:
        tx.delete_faces(tx.collection(name), labels)


def _coll(store: PostgresStore, name: str) -> CollectionRow:
    with store.read() as tx:
        return tx.collection(name)


def _search_all(store: PostgresStore, name: str, queries: np.ndarray) -> list[list[tuple[int, float]]]:
    coll = _coll(store, name)
    return [store.search(coll, q, 50, -1.0) for q in queries]


def _snapshot_files(snapshots: Path) -> list[Path]:
    return sorted(snapshots.glob("postgresql-*/collection-*.faiss"))


@pytest.mark.parametrize("ann_threshold", [1000, 16], ids=["flat", "quantized"])
def test_restart_loads_the_snapshot_and_searches_the_same(
    pg_url: str, tmp_path: Path, ann_threshold: int
) -> None:
    snapshots = tmp_path / "snapshots"
    vectors = _vectors(60, seed=1)
    first = _open(pg_url, snapshots, ann_threshold)
    _add(first, "c", vectors)
    before = _search_all(first, "c", vectors[:10])
    assert first.snapshots_loaded == 0
    first.close()
    (path,) = _snapshot_files(snapshots)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(snapshots.stat().st_mode) == 0o700

    second = _open(pg_url, snapshots, ann_threshold)
    try:
        assert second.snapshots_loaded == 1
        (held,) = second.indexes.cached()
        assert held.kind == ("flat" if ann_threshold == 1000 else "pq") and held.live_count == 60
        assert _search_all(second, "c", vectors[:10]) == before
    finally:
        second.close()


def test_changes_while_stopped_are_replayed_and_a_deleted_face_does_not_come_back(
    pg_url: str, tmp_path: Path
) -> None:
    snapshots = tmp_path / "snapshots"
    vectors = _vectors(40, seed=2)
    first = _open(pg_url, snapshots)
    labels = _add(first, "c", vectors)
    first.search(_coll(first, "c"), vectors[0], 5, -1.0)
    first.close()
    (path,) = _snapshot_files(snapshots)
    deleted_bytes = vector_to_blob(vectors[3])
    assert deleted_bytes in path.read_bytes()

    other = PostgresStore(pg_url, listen=False)  # another server, without snapshots
    _delete(other, "c", [labels[3]])
    added = _add(other, "c", _vectors(5, seed=3))
    other.close()

    second = _open(pg_url, snapshots)
    try:
        assert second.snapshots_loaded == 1
        # the snapshot held the deleted face: removed at once when the deletion was replayed
        assert not path.exists()
        hits = dict(second.search(_coll(second, "c"), vectors[3], 100, -1.0))
        assert labels[3] not in hits
        assert set(added) <= set(hits) and len(hits) == 44
    finally:
        second.close()
    (path,) = _snapshot_files(snapshots)  # saved again at close, without the deleted face
    assert deleted_bytes not in path.read_bytes()
    third = _open(pg_url, snapshots)
    try:
        assert third.snapshots_loaded == 1
        assert labels[3] not in dict(third.search(_coll(third, "c"), vectors[3], 100, -1.0))
    finally:
        third.close()


def test_a_snapshot_older_than_the_compacted_log_is_discarded(pg_url: str, tmp_path: Path) -> None:
    snapshots = tmp_path / "snapshots"
    vectors = _vectors(30, seed=4)
    first = _open(pg_url, snapshots)
    labels = _add(first, "c", vectors)
    first.search(_coll(first, "c"), vectors[0], 5, -1.0)
    first.close()
    other = PostgresStore(pg_url, listen=False)
    _delete(other, "c", [labels[0]])
    with other.database.pool.connection() as conn:  # what a compaction does: forget the log
        conn.execute("UPDATE collections SET log_floor = (SELECT max(seq) FROM changes) WHERE name = 'c'")
        conn.execute("DELETE FROM changes")
    other.close()

    second = _open(pg_url, snapshots)
    try:
        assert second.snapshots_loaded == 0
        assert _snapshot_files(snapshots) == []  # removed: it held the deleted face
        hits = dict(second.search(_coll(second, "c"), vectors[0], 100, -1.0))
        assert labels[0] not in hits and len(hits) == 29
    finally:
        second.close()


def test_a_deleted_and_recreated_collection_discards_the_snapshot(pg_url: str, tmp_path: Path) -> None:
    snapshots = tmp_path / "snapshots"
    first = _open(pg_url, snapshots)
    _add(first, "c", _vectors(20, seed=5))
    first.search(_coll(first, "c"), _vectors(1, seed=6)[0], 5, -1.0)
    first.close()
    other = PostgresStore(pg_url, listen=False)
    with other.write() as tx:
        tx.delete_collection(tx.collection("c"))
    fresh = _add(other, "c", _vectors(3, seed=7))  # same name, new collection id
    other.close()

    second = _open(pg_url, snapshots)
    try:
        assert second.snapshots_loaded == 0
        assert _snapshot_files(snapshots) == []
        hits = dict(second.search(_coll(second, "c"), _vectors(1, seed=6)[0], 100, -1.0))
        assert sorted(hits) == sorted(fresh)
    finally:
        second.close()


def test_a_running_server_removes_its_snapshot_when_another_deletes_a_face(
    pg_url: str, tmp_path: Path
) -> None:
    snapshots = tmp_path / "snapshots"
    vectors = _vectors(20, seed=8)
    first = _open(pg_url, snapshots)
    labels = _add(first, "c", vectors)
    first.search(_coll(first, "c"), vectors[0], 5, -1.0)
    first.close()
    running = _open(pg_url, snapshots, listen=True)
    try:
        assert running.snapshots_loaded == 1
        (path,) = _snapshot_files(snapshots)
        other = PostgresStore(pg_url, listen=False)
        try:
            _delete(other, "c", [labels[5]])
        finally:
            other.close()
        deadline = time.monotonic() + 10
        while path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not path.exists(), "the snapshot still holds a face another server deleted"
        (held,) = running.indexes.cached()
        assert labels[5] not in held.labels()
    finally:
        running.close()
    (path,) = _snapshot_files(snapshots)
    assert vector_to_blob(vectors[5]) not in path.read_bytes()


def test_small_indexes_are_not_saved(pg_url: str, tmp_path: Path) -> None:
    store = PostgresStore(pg_url, listen=False, snapshot_dir=tmp_path / "snapshots", snapshot_min_faces=50)
    _add(store, "c", _vectors(49, seed=9))
    store.search(_coll(store, "c"), _vectors(1, seed=10)[0], 5, -1.0)
    store.close()
    assert _snapshot_files(tmp_path / "snapshots") == []
