"""Local index snapshots of the PostgreSQL store under attack: no deleted vector survives in any file
of a server's data directory (a save killed midway, a deletion committed while the store closes, a
listener that connects late), a snapshot of another database (a copy made with CREATE DATABASE ...
TEMPLATE carries the same store_id) or whose faces disagree with the database is never served, and
the folders are owner-only under any umask."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psycopg
import pytest

from pipeline.store.postgres import ChangeListener, PostgresStore
from tests.postgres.test_pg_snapshots import _add, _open, _vectors
from tests.support.erasure import files_holding as _files_holding
from tests.support.erasure import loose_modes
from tests.support.pgserver import TempPostgres


def _delete(url: str, name: str, labels: list[int]) -> None:
    """Delete faces through another server (no snapshots, no listener)."""
    other = PostgresStore(url, listen=False)
    try:
        with other.write() as tx:
            tx.delete_faces(tx.collection(name), labels)
    finally:
        other.close()


def files_holding(data_dir: Path, vectors: Iterable[np.ndarray]) -> dict[int, list[str]]:
    """tests.support.erasure.files_holding, repeated when a file renamed or removed by a save
    running meanwhile vanished under the scan."""
    vectors = list(vectors)
    for _ in range(50):
        try:
            return _files_holding(data_dir, vectors)
        except FileNotFoundError:
            time.sleep(0.01)
    return _files_holding(data_dir, vectors)


def _held_labels(store: PostgresStore, name: str) -> set[int]:
    with store.read() as tx:
        coll = tx.collection(name)
    return set(store.index_of(coll).labels().tolist())


@contextmanager
def _store(url: str, snapshots: Path, listen: bool = False) -> Iterator[PostgresStore]:
    store = _open(url, snapshots, listen=listen)
    try:
        yield store
    finally:
        store.close()


_KILLED_SAVE = """
import os, sys, time
from pathlib import Path
from pipeline.store.postgres import PostgresStore

def stalled_replace(src, dst):  # the save has written its temporary file: stop here until killed
    print("SAVING", flush=True)
    time.sleep(120)

os.replace = stalled_replace
store = PostgresStore(sys.argv[1], ann_threshold=1000, listen=False, snapshot_dir=Path(sys.argv[2]),
                      snapshot_min_faces=1)
with store.read() as tx:
    coll = tx.collection("c")
store.index_of(coll)
store.save_snapshots()
"""


def test_a_save_killed_midway_leaves_no_deleted_vector_once_restarted(pg_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    vectors = _vectors(30, seed=1)
    seed_store = PostgresStore(pg_url, listen=False)
    labels = _add(seed_store, "c", vectors)
    seed_store.close()
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SAVE, pg_url, str(data_dir / "snapshots")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "SAVING"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert files_holding(data_dir, [vectors[4]]), "the killed save left no temporary file (test is void)"

    _delete(pg_url, "c", [labels[4]])  # on another server, while this one is down
    with _store(pg_url, data_dir / "snapshots") as restarted:
        assert labels[4] not in _held_labels(restarted, "c")
        assert files_holding(data_dir, [vectors[4]]) == {}, "a deleted vector survives on disk"


def test_a_deletion_committed_while_the_store_closes_leaves_no_copy(pg_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    vectors = _vectors(30, seed=2)
    store = _open(pg_url, data_dir / "snapshots", listen=True)
    labels = _add(store, "c", vectors)
    _held_labels(store, "c")
    assert store.listener is not None
    stop_listening = store.listener.stop

    saved: list[bool] = []

    def stop_then_delete() -> None:  # the snapshots are saved; another server deletes right now
        stop_listening()
        saved.append(bool(files_holding(data_dir, [vectors[7]])))
        _delete(pg_url, "c", [labels[7]])

    store.listener.stop = stop_then_delete  # type: ignore[method-assign]
    store.close()
    assert saved == [True], "no snapshot was saved at close (test is void)"
    assert files_holding(data_dir, [vectors[7]]) == {}, "the snapshot saved at close keeps a deleted face"


def test_a_listener_that_connects_late_still_applies_deletions(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    vectors = _vectors(30, seed=3)
    started: list[ChangeListener] = []
    monkeypatch.setattr(ChangeListener, "start", lambda self: started.append(self))
    with _store(pg_url, data_dir / "snapshots", listen=True) as store:
        labels = _add(store, "c", vectors)
        _held_labels(store, "c")
        store.save_snapshots()
        assert files_holding(data_dir, [vectors[9]])
        _delete(pg_url, "c", [labels[9]])  # committed before the listener listens
        monkeypatch.undo()
        (listener,) = started
        listener.start()
        assert listener.listening.wait(10)
        deadline = time.monotonic() + 5
        while files_holding(data_dir, [vectors[9]]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert files_holding(data_dir, [vectors[9]]) == {}, "a deletion missed before LISTEN stays on disk"
        assert labels[9] not in _held_labels(store, "c")


def test_a_copied_database_never_loads_the_original_snapshot(pg_server: TempPostgres, tmp_path: Path) -> None:
    original = pg_server.new_database()
    snapshots = tmp_path / "data" / "snapshots"
    vectors = _vectors(40, seed=4)
    store = PostgresStore(original, listen=False)
    labels = _add(store, "c", vectors[:20])
    store.close()
    copy_name = "copy_" + uuid.uuid4().hex[:8]
    with psycopg.connect(pg_server.url(), autocommit=True) as admin:  # same store_id, same log
        admin.execute(f'CREATE DATABASE "{copy_name}" TEMPLATE "{original.rsplit("/", 1)[1]}"')
    copy = pg_server.url(copy_name)

    with _store(original, snapshots) as first:  # the original goes on: 20 more faces, then saved
        _add(first, "c", vectors[20:])
        _held_labels(first, "c")
    _delete(copy, "c", [labels[0]])  # the copy diverges: face 0 deleted, 25 others added
    writer = PostgresStore(copy, listen=False)
    copy_added = _add(writer, "c", _vectors(25, seed=5))
    writer.close()
    with _store(copy, snapshots) as other:
        held = _held_labels(other, "c")
        assert labels[0] not in held, "the copy serves a face it deleted (the original's snapshot)"
        assert held == (set(labels) - {labels[0]}) | set(copy_added)


def test_a_snapshot_whose_faces_disagree_with_the_database_is_rebuilt(pg_url: str, tmp_path: Path) -> None:
    """A database restored from a backup (or edited by hand) can sit at the snapshot's log position
    with other faces: the snapshot must not be trusted when its face count disagrees."""
    snapshots = tmp_path / "data" / "snapshots"
    vectors = _vectors(20, seed=6)
    with _store(pg_url, snapshots) as first:
        labels = _add(first, "c", vectors)
        _held_labels(first, "c")
    with psycopg.connect(pg_url, autocommit=True) as conn:  # a face gone without a logged removal
        conn.execute("DELETE FROM faces WHERE label = %s", (labels[2],))
        conn.execute("UPDATE collections SET face_count = face_count - 1 WHERE name = 'c'")
    with _store(pg_url, snapshots) as second:
        assert labels[2] not in _held_labels(second, "c")
        assert files_holding(tmp_path / "data", [vectors[2]]) == {}


def test_snapshot_folders_are_owner_only_under_a_zero_umask(pg_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"  # does not exist yet: the store creates it
    old = os.umask(0)
    try:
        with _store(pg_url, data_dir / "snapshots") as store:
            _add(store, "c", _vectors(10, seed=7))
            _held_labels(store, "c")
    finally:
        os.umask(old)
    assert files_holding(data_dir, _vectors(10, seed=7)[:1])
    assert loose_modes(data_dir) == []


def _saving_loop(store: PostgresStore, name: str, stop: threading.Event, errors: list[BaseException]) -> None:
    """Search and save the snapshots over and over (what a busy server closing or building does)."""
    try:
        with store.read() as tx:
            coll = tx.collection(name)
        while not stop.is_set():
            store.search(coll, _vectors(1, seed=99)[0], 5, -1.0)
            store.save_snapshots()
    except BaseException as exc:  # reported by the test
        errors.append(exc)


@pytest.mark.parametrize("ann_threshold", [1000, 16], ids=["flat", "quantized"])
def test_saves_racing_deletions_on_the_deleting_server_keep_no_deleted_vector(
    pg_url: str, tmp_path: Path, ann_threshold: int
) -> None:
    data_dir = tmp_path / "data"
    vectors = _vectors(80, seed=10)
    store = PostgresStore(
        pg_url, ann_threshold=ann_threshold, snapshot_dir=data_dir / "snapshots", snapshot_min_faces=1
    )
    try:
        labels = _add(store, "c", vectors)
        stop, errors = threading.Event(), []
        saver = threading.Thread(target=_saving_loop, args=(store, "c", stop, errors))
        saver.start()
        try:
            for i in range(0, 40, 2):
                with store.write() as tx:
                    tx.delete_faces(tx.collection("c"), [labels[i]])
                held = files_holding(data_dir, [vectors[i]])
                assert held == {}, f"face {i}: a snapshot holds it after DeleteFaces returned: {held}"
                _add(store, "c", _vectors(1, seed=100 + i))
        finally:
            stop.set()
            saver.join(30)
        assert not errors, errors
    finally:
        store.close()
    assert files_holding(data_dir, vectors[40:41]), "no snapshot was saved (test is void)"
    assert files_holding(data_dir, vectors[0:40:2]) == {}


def test_saves_racing_deletions_of_another_server_are_erased_when_applied(
    pg_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    vectors = _vectors(60, seed=11)
    deleter = PostgresStore(pg_url, listen=False)
    labels = _add(deleter, "c", vectors)
    running = _open(pg_url, data_dir / "snapshots", listen=True)
    try:
        assert running.listener is not None and running.listener.listening.wait(10)
        stop, errors = threading.Event(), []
        saver = threading.Thread(target=_saving_loop, args=(running, "c", stop, errors))
        saver.start()
        try:
            for i in range(0, 30, 2):
                with deleter.write() as tx:
                    tx.delete_faces(tx.collection("c"), [labels[i]])
                deadline = time.monotonic() + 5
                while files_holding(data_dir, [vectors[i]]) and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert files_holding(data_dir, [vectors[i]]) == {}, f"face {i} stays in a snapshot"
        finally:
            stop.set()
            saver.join(30)
        assert not errors, errors
    finally:
        running.close()
        deleter.close()
    assert files_holding(data_dir, vectors[0:30:2]) == {}
    assert files_holding(data_dir, vectors[31:32]), "no snapshot was saved (test is void)"
