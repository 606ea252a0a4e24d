"""Deletion erases: after DeleteFaces, DeleteUser or DeleteCollection returns, no byte of the data
directory holds a deleted vector or centroid, nor does the process's index or centroid cache,
while every kept vector is still found by the same scan. Also: owner-only file modes and disk
space given back."""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.errors import InternalServerError
from pipeline.jobs.ledger import JobLedger
from pipeline.service import FacePipe
from pipeline.store import CollectionRow, Store, db
from pipeline.store.index import MIN_ANN_THRESHOLD, faiss
from pipeline.store.migrations import MIGRATIONS
from tests.support.erasure import files_holding, loose_modes, vector_chunks
from tests.support.synthetic_faces import DIM, LinearEngine, index_vectors, unit

KINDS = {"exact": 100_000, "quantized": MIN_ANN_THRESHOLD}
"""ANN threshold per index kind: the collections below have 40 faces."""


@pytest.fixture()
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def open_pipe(data_dir: Path, ann_threshold: int) -> FacePipe:
    settings = Settings(data_dir=data_dir, cache_dir=data_dir.parent / "cache", ann_threshold=ann_threshold)
    return FacePipe(settings, engine=LinearEngine())


def stored_vectors(fp: FacePipe, collection: str, face_ids: list[str]) -> list[np.ndarray]:
    with fp.store.read() as tx:
        coll = tx.collection(collection)
        rows = tx.faces_by_id(coll, face_ids)
        return [tx.face_vector(rows[f].label) for f in face_ids]


def collection_row(fp: FacePipe, name: str) -> CollectionRow:
    with fp.store.read() as tx:
        return tx.collection(name)


def random_vectors(seed: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [unit(rng.normal(size=DIM)) for _ in range(count)]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_delete_faces_user_and_collection_leave_no_copy(tmp_path: Path, kind: str, umask_022: None) -> None:
    data_dir = tmp_path / "home"
    fp = open_pipe(data_dir, KINDS[kind])
    fp.call("CreateCollection", {"CollectionId": "keep"})
    fp.call("CreateCollection", {"CollectionId": "gone"})
    face_ids = index_vectors(fp, "keep", random_vectors(1, 40), prefix="k")
    gone_ids = index_vectors(fp, "gone", random_vectors(2, 30), prefix="g")
    vectors = stored_vectors(fp, "keep", face_ids)
    gone_vectors = stored_vectors(fp, "gone", gone_ids)
    fp.call("CreateUser", {"CollectionId": "keep", "UserId": "u"})
    fp.call(
        "AssociateFaces",
        {"CollectionId": "keep", "UserId": "u", "FaceIds": face_ids[:3], "UserMatchThreshold": 0},
    )
    with fp.store.read() as tx:
        centroid = tx.user_centroid(tx.collection("keep"), "u")
    assert centroid is not None
    # the searches load the indexes and the centroid cache into memory; a quantized index is saved
    fp.call("SearchFaces", {"CollectionId": "keep", "FaceId": face_ids[5]})
    fp.call("SearchFaces", {"CollectionId": "gone", "FaceId": gone_ids[0]})
    fp.call("SearchUsers", {"CollectionId": "keep", "FaceId": face_ids[5]})
    assert fp.store.index_of(collection_row(fp, "keep")).kind == ("pq" if kind == "quantized" else "flat")
    everything = [*vectors, centroid, *gone_vectors]
    assert len(files_holding(data_dir, everything)) == len(everything)  # the scan sees them all
    if kind == "quantized":
        saved = data_dir / "indexes" / f"collection-{collection_row(fp, 'keep').id}.faiss"
        assert vector_chunks(vectors[10])[0] in saved.read_bytes()

    deleted = fp.call("DeleteFaces", {"CollectionId": "keep", "FaceIds": face_ids[10:20]})
    assert len(deleted["DeletedFaces"]) == 10
    fp.call("DeleteUser", {"CollectionId": "keep", "UserId": "u"})
    fp.call("DeleteCollection", {"CollectionId": "gone"})

    erased = [*vectors[10:20], centroid, *gone_vectors]
    kept = vectors[:10] + vectors[20:]
    assert files_holding(data_dir, erased) == {}
    assert len(files_holding(data_dir, kept)) == len(kept)
    assert (data_dir / "facepipe.sqlite3-wal").stat().st_size == 0
    # this process, as the calls left it (before any later search catches up): the index erased
    # them, the centroid cache forgot the user, the deleted collection's index is gone
    (held,) = fp.store.indexes.cached()
    memory = faiss.serialize_index(held.index).tobytes()
    assert not any(c in memory for v in erased for c in vector_chunks(v))
    assert all(vector_chunks(v)[0] in memory for v in kept)
    cached_centroids = b"".join(m.tobytes() for _, _, _, m in fp.store._centroids.values())
    assert vector_chunks(centroid)[0] not in cached_centroids
    assert fp.store.match_users(collection_row(fp, "keep"), centroid, -1.0, 10, None) == []
    fp.close()  # saves the caught-up quantized index
    assert files_holding(data_dir, erased) == {}
    assert len(files_holding(data_dir, kept)) == len(kept)
    assert loose_modes(data_dir) == []


def test_quantized_codes_of_erased_faces_are_overwritten(tmp_path: Path) -> None:
    """The in-memory quantized index holds neither the float vectors nor the 4-bit codes of erased
    faces: every code slot (also the unused ones of the last block) is a kept face's or zeros."""
    store = Store(tmp_path, ann_threshold=MIN_ANN_THRESHOLD)
    rng = np.random.default_rng(3)
    vectors = np.stack([unit(rng.normal(size=DIM)) for _ in range(300)])
    from tests.store.test_index import add_faces  # the same helper the index tests use

    labels = add_faces(store, vectors)
    with store.read() as tx:
        coll = tx.collection("c")
    idx = store.index_of(coll)
    assert idx.kind == "pq"
    with store.write() as tx:
        tx.delete_faces(coll, labels[::3])
    quantized = faiss.downcast_index(faiss.downcast_index(idx.index.index).base_index)
    packer = quantized.get_CodePacker()
    blocks = faiss.rev_swig_ptr(quantized.codes.get(), quantized.codes.size()).reshape(-1, packer.block_size)
    slots = {packer.unpack_1(blocks, i).tobytes() for i in range(len(blocks) * packer.nvec)}
    kept_codes = {c.tobytes() for c in quantized.pq.compute_codes(np.delete(vectors, np.s_[::3], axis=0))}
    erased_codes = {c.tobytes() for c in quantized.pq.compute_codes(vectors[::3])}
    assert slots <= kept_codes | {bytes(packer.code_size)}
    assert not (slots & erased_codes) - kept_codes
    assert sorted(idx.labels().tolist()) == sorted(set(labels) - set(labels[::3]))
    # and it still answers like an exact search over the kept faces
    kept = np.delete(vectors, np.s_[::3], axis=0)
    kept_labels = np.delete(np.asarray(labels), np.s_[::3])
    for q in kept[:20]:
        best = int(kept_labels[np.argmax(kept @ q)])
        assert store.search(coll, q, 1, -1.0)[0][0] == best
    store.close()


def test_deletion_waits_for_readers_holding_old_snapshots(tmp_path: Path) -> None:
    """A read transaction in another thread and one in another process still hold the deleted
    vector's frames when DeleteFaces commits: the call returns once they are gone, and then the
    log is empty."""
    fp = open_pipe(tmp_path / "home", KINDS["exact"])
    fp.call("CreateCollection", {"CollectionId": "c"})
    face_ids = index_vectors(fp, "c", random_vectors(4, 5))
    target = stored_vectors(fp, "c", face_ids[:1])
    db_path = tmp_path / "home" / "facepipe.sqlite3"
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('BEGIN'); c.execute('SELECT count(*) FROM faces').fetchone()\n"
            "print('reading', flush=True); time.sleep(1.5); c.execute('COMMIT')\n",
            str(db_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None and reader.stdout.readline().strip() == "reading"
    in_thread = threading.Event()

    def read_slowly() -> None:
        with fp.store.read() as tx:
            tx.face_vector(1)
            in_thread.set()
            time.sleep(1.0)

    thread = threading.Thread(target=read_slowly)
    thread.start()
    in_thread.wait(10)
    started = time.monotonic()
    fp.call("DeleteFaces", {"CollectionId": "c", "FaceIds": face_ids[:1]})
    waited = time.monotonic() - started
    thread.join(10)
    reader.wait(10)
    assert waited >= 0.5  # it did wait for the readers
    assert (tmp_path / "home" / "facepipe.sqlite3-wal").stat().st_size == 0
    assert files_holding(tmp_path / "home", target) == {}
    fp.close()


@pytest.mark.parametrize("deletion", ["DeleteUser", "DeleteCollection"])
def test_a_match_users_in_flight_does_not_put_erased_centroids_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deletion: str
) -> None:
    """SearchUsers reads the centroids in a snapshot taken before a deletion commits and clears the
    cache: what it read must not be cached afterwards (it would stay in memory for good)."""
    fp = open_pipe(tmp_path / "home", KINDS["exact"])
    fp.call("CreateCollection", {"CollectionId": "c"})
    face_ids = index_vectors(fp, "c", random_vectors(5, 4))
    fp.call("CreateUser", {"CollectionId": "c", "UserId": "u"})
    fp.call(
        "AssociateFaces",
        {"CollectionId": "c", "UserId": "u", "FaceIds": face_ids[:3], "UserMatchThreshold": 0},
    )
    coll = collection_row(fp, "c")
    with fp.store.read() as tx:
        centroid = tx.user_centroid(coll, "u")
    assert centroid is not None
    original = db.Tx.user_centroids
    read = threading.Event()
    proceed = threading.Event()

    def slow_user_centroids(self: db.Tx, coll: CollectionRow) -> tuple[list[str], list[int], np.ndarray]:
        out = original(self, coll)
        read.set()
        proceed.wait(10)
        return out

    monkeypatch.setattr(db.Tx, "user_centroids", slow_user_centroids)
    searcher = threading.Thread(target=lambda: fp.store.match_users(coll, centroid, 0.0, 10, None))
    searcher.start()
    assert read.wait(10)
    monkeypatch.setattr(db.Tx, "user_centroids", original)
    params = {"CollectionId": "c"} | ({"UserId": "u"} if deletion == "DeleteUser" else {})
    # the deletion's WAL checkpoint waits for the searcher's snapshot: run it on a thread
    deleter = threading.Thread(target=lambda: fp.call(deletion, params))
    deleter.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until the deletion has committed
        with fp.store.read() as tx:
            found = tx.find_collection("c")
            if found is None or tx.find_user(found, "u") is None:
                break
        time.sleep(0.01)
    time.sleep(0.3)  # and has dropped the cache
    proceed.set()
    searcher.join(10)
    deleter.join(10)
    cached_centroids = b"".join(m.tobytes() for _, _, _, m in fp.store._centroids.values())
    assert vector_chunks(centroid)[0] not in cached_centroids
    fp.close()


def test_a_reader_that_outlasts_the_timeout_gets_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the log cannot be truncated in time the call says so (the deletion is committed), and
    the next deletion finishes the erasure."""
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 300)
    fp = open_pipe(tmp_path / "home", KINDS["exact"])
    fp.call("CreateCollection", {"CollectionId": "c"})
    face_ids = index_vectors(fp, "c", random_vectors(5, 4))
    targets = stored_vectors(fp, "c", face_ids[:2])
    holding, release = threading.Event(), threading.Event()

    def hold_snapshot() -> None:
        with fp.store.read() as tx:
            tx.face_vector(1)
            holding.set()
            release.wait(20)

    thread = threading.Thread(target=hold_snapshot)
    thread.start()
    holding.wait(10)
    with pytest.raises(InternalServerError, match="committed"):
        fp.call("DeleteFaces", {"CollectionId": "c", "FaceIds": face_ids[:1]})
    release.set()
    thread.join(10)
    listed = fp.call("ListFaces", {"CollectionId": "c"})["Faces"]
    assert face_ids[0] not in {f["FaceId"] for f in listed}
    fp.call("DeleteFaces", {"CollectionId": "c", "FaceIds": face_ids[1:2]})
    assert files_holding(tmp_path / "home", targets) == {}
    fp.close()


def test_secure_delete_is_set_on_every_connection(tmp_path: Path) -> None:
    store = Store(tmp_path)
    values: list[int] = []

    def check() -> None:
        with store.read() as tx:
            values.append(tx.conn.execute("PRAGMA secure_delete").fetchone()[0])

    threads = [threading.Thread(target=check) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check()
    assert values == [1, 1, 1, 1]
    store.close()


def test_index_file_saved_by_an_older_version_is_purged_of_removed_faces(tmp_path: Path) -> None:
    """Earlier versions of facepipe kept removed faces in a saved quantized index (listed in its
    header, filtered at search time): opening such a file erases them and removes the file."""
    from tests.store.test_index import add_faces

    store = Store(tmp_path, ann_threshold=MIN_ANN_THRESHOLD)
    rng = np.random.default_rng(6)
    vectors = np.stack([unit(rng.normal(size=DIM)) for _ in range(100)])
    labels = add_faces(store, vectors)
    with store.read() as tx:
        coll = tx.collection("c")
    store.index_of(coll)  # built and saved
    with store.db.write() as tx:  # deleted as the old version did: the file keeps them
        tx.delete_faces(coll, labels[:10])
    store.db.erase_log()
    store.db.close()
    (saved,) = (tmp_path / "indexes").glob("*.faiss")
    data = saved.read_bytes()
    size = struct.unpack_from("<Q", data, 6)[0]
    header = json.loads(data[14 : 14 + size])
    header["removed"] = labels[:10]
    new_header = json.dumps(header).encode()
    saved.write_bytes(data[:6] + struct.pack("<Q", len(new_header)) + new_header + data[14 + size :])
    assert len(files_holding(tmp_path, list(vectors[:10]))) == 10  # the old file holds them

    reopened = Store(tmp_path, ann_threshold=MIN_ANN_THRESHOLD)
    index = reopened.index_of(coll)
    assert sorted(index.labels().tolist()) == labels[10:]
    assert files_holding(tmp_path, list(vectors[:10])) == {}
    reopened.close()
    assert files_holding(tmp_path, list(vectors[:10])) == {}
    assert len(files_holding(tmp_path, list(vectors[10:]))) == 90


def test_delete_collection_gives_disk_space_back(tmp_path: Path) -> None:
    fp = open_pipe(tmp_path / "home", KINDS["exact"])
    fp.call("CreateCollection", {"CollectionId": "small"})
    fp.call("CreateCollection", {"CollectionId": "big"})
    index_vectors(fp, "small", random_vectors(7, 10), prefix="s")
    index_vectors(fp, "big", random_vectors(8, 3000), prefix="b")
    db_file = tmp_path / "home" / "facepipe.sqlite3"
    fp.store.db.erase_log()  # everything written into the database file, as after a deletion
    before = db_file.stat().st_size
    fp.call("DeleteCollection", {"CollectionId": "big"})
    after = db_file.stat().st_size
    assert after < before / 3, (before, after)
    assert fp.call("DescribeCollection", {"CollectionId": "small"})["FaceCount"] == 10
    fp.close()


def test_delete_collection_gives_space_back_in_a_store_without_incremental_vacuum(tmp_path: Path) -> None:
    """Stores created by earlier versions have auto_vacuum NONE: the first DeleteCollection VACUUMs
    them once (switching them to incremental)."""
    home = tmp_path / "home"
    home.mkdir()
    conn = sqlite3.connect(home / "facepipe.sqlite3", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in MIGRATIONS[0].statements():  # the schema as the version before wrote it
        conn.execute(statement)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', 1)")
    conn.close()
    fp = open_pipe(home, KINDS["exact"])
    with fp.store.read() as tx:
        assert tx.conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    fp.call("CreateCollection", {"CollectionId": "big"})
    fp.call("CreateCollection", {"CollectionId": "small"})
    index_vectors(fp, "big", random_vectors(9, 3000), prefix="b")
    index_vectors(fp, "small", random_vectors(10, 10), prefix="s")
    fp.store.db.erase_log()
    before = (home / "facepipe.sqlite3").stat().st_size
    fp.call("DeleteCollection", {"CollectionId": "big"})
    after = (home / "facepipe.sqlite3").stat().st_size
    assert after < before / 3, (before, after)
    with fp.store.read() as tx:
        assert tx.conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    assert fp.call("DescribeCollection", {"CollectionId": "small"})["FaceCount"] == 10
    fp.close()


def test_data_directory_and_files_are_owner_only_whatever_the_umask(tmp_path: Path, umask_022: None) -> None:
    home = tmp_path / "home"
    fp = open_pipe(home, MIN_ANN_THRESHOLD)
    fp.call("CreateCollection", {"CollectionId": "c"})
    index_vectors(fp, "c", random_vectors(11, 20))
    first = fp.call("ListFaces", {"CollectionId": "c"})["Faces"][0]["FaceId"]
    fp.call("SearchFaces", {"CollectionId": "c", "FaceId": first})  # builds and saves the quantized index
    with JobLedger.in_data_dir(home) as ledger:
        ledger.open_job("c", "/photos", "2026")
        lock = ledger.lock_file(1)
        assert lock.exists()
        names = {p.name for p in home.iterdir()}
        assert {"facepipe.sqlite3", "facepipe.sqlite3-wal", "facepipe.sqlite3-shm", "indexes"} <= names
        assert {"jobs.sqlite3", "jobs.sqlite3-wal", "jobs.sqlite3-shm", lock.name} <= names
        assert list((home / "indexes").glob("*.faiss"))
        assert loose_modes(home) == []
    fp.close()
    assert loose_modes(home) == []


def test_files_left_open_by_an_older_version_are_narrowed(tmp_path: Path, umask_022: None) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    (home / "indexes").mkdir(mode=0o755)
    (home / "indexes" / "collection-1.faiss").write_bytes(b"FPIX1\n")
    os.chmod(home / "indexes" / "collection-1.faiss", 0o644)
    for name in ("facepipe.sqlite3", "jobs.sqlite3"):
        conn = sqlite3.connect(home / name)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.close()
        os.chmod(home / name, 0o644)
    os.chmod(home, 0o755)
    store = Store(home)
    JobLedger.in_data_dir(home).close()
    assert loose_modes(home) == []
    store.close()
