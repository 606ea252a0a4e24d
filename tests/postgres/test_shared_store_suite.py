"""The store suite's own tests, run on the PostgreSQL backend: the property state machine
(tests/property) and the SIGKILL and concurrency runs of tests/store's worker, with FACEPIPE_STORE
naming a fresh database. The checks of the stored state are the same, in PostgreSQL's SQL."""

from __future__ import annotations

import random
import signal
import time
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import invariant

from pipeline.config import Settings
from pipeline.service import FacePipe
from pipeline.store import open_store
from pipeline.store.db import vector_to_blob
from pipeline.store.postgres import PostgresStore
from tests.property.test_store_machine import StoreMachine
from tests.store.test_crash_and_concurrency import acks, start
from tests.support.pgserver import TempPostgres

SERVER: list[TempPostgres] = []
KINDS_SEEN: set[str] = set()


@pytest.fixture(autouse=True)
def _session_server(pg_server: TempPostgres) -> None:
    SERVER[:] = [pg_server]  # for the state machine, which pytest builds without fixtures


class PostgresStoreMachine(StoreMachine):
    """tests/property's machine with its FacePipe on a fresh PostgreSQL database."""

    def __init__(self) -> None:
        self.url = SERVER[0].new_database()
        super().__init__()

    def _open(self) -> FacePipe:
        fp = super()._open()
        fp.settings = replace(fp.settings, store=self.url)
        return fp

    @invariant()
    def nothing_deleted_remains_on_disk(self) -> None:
        """On PostgreSQL (replacing the SQLite file scan, which would find no PostgreSQL data in the
        machine's directory): no row of faces or users visible now holds a deleted face's vector or
        a deleted user's centroid. The bytes of pruned tuples left in heap pages and the WAL are
        measured by benchmarks/measure_postgres_erasure.py (see pipeline/store/postgres.py)."""
        query = (
            "SELECT (SELECT count(*) FROM faces WHERE vector = ANY(%s))"
            " + (SELECT count(*) FROM users WHERE centroid = ANY(%s))"
        )
        with psycopg.connect(self.url) as conn:
            if self.faces:  # the query finds what is kept (the blobs are written as stored)
                with self.fp.store.read() as tx:
                    kept = tx.faces_by_id(tx.collection("c"), [min(self.faces)])[min(self.faces)]
                    blob = [vector_to_blob(tx.face_vector(kept.label))]
                row = conn.execute(query, (blob, blob)).fetchone()
                assert row is not None and row[0] >= 1
            blobs = [vector_to_blob(v) for v in self.erased]
            assert conn.execute(query, (blobs, blobs)).fetchone() == (0,)

    def teardown(self) -> None:
        assert isinstance(self.fp.store, PostgresStore)
        KINDS_SEEN.update(self.kinds)
        super().teardown()


TestPostgresStoreMachine = PostgresStoreMachine.TestCase
TestPostgresStoreMachine.settings = settings(
    max_examples=6,
    stateful_step_count=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_machine_runs_reached_both_index_kinds() -> None:
    """The runs above crossed the ANN threshold on PostgreSQL too."""
    if not KINDS_SEEN:
        pytest.skip("run together with TestPostgresStoreMachine")
    assert {"flat", "pq"} == KINDS_SEEN


def check_consistent(url: str, acknowledged: list[tuple[str, str]]) -> int:
    """Every acknowledged write is in PostgreSQL, counts agree, and FAISS built from it agrees."""
    store = open_store(Settings(store=url))
    assert isinstance(store, PostgresStore)
    try:
        with store.read() as tx:
            coll = tx.collection("c")
            rows = tx.list_faces(coll, 0, 1_000_000)
            counted = tx.conn.execute(
                "SELECT count(*) FROM faces WHERE collection_id = %s", (coll.id,)
            ).fetchone()
            users = tx.list_users(coll, None, 10_000)
        faces = {r.face_id: r for r in rows}
        assert counted is not None and coll.face_count == counted[0] == len(rows)
        maybe_deleted = {f for kind, f in acknowledged if kind == "try-delete"}
        for kind, face_id in acknowledged:
            if kind == "index" and face_id not in maybe_deleted:
                assert face_id in faces, f"acknowledged face {face_id} lost"
            if kind == "assoc":
                assert faces[face_id].user_id is not None
            if kind == "delete":
                assert face_id not in faces
        for user in users:
            assert user.face_count == sum(r.user_id == user.user_id for r in rows)
        assert set(store.index_of(coll).labels().tolist()) == {r.label for r in rows}
        return len(rows)
    finally:
        store.close()


def test_sigkill_during_writes_loses_nothing_acknowledged(tmp_path: Path, pg_env: str) -> None:
    rng = random.Random(11)
    acknowledged: list[tuple[str, str]] = []
    for round_number in range(2):
        child = start(tmp_path, "crash", round_number)
        assert child.stdout is not None
        first = child.stdout.readline()  # the worker is writing
        time.sleep(0.3 + rng.random() * 0.7)
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL, err[-2000:]
        acknowledged += acks(first + out)
        check_consistent(pg_env, acknowledged)
    assert sum(kind == "index" for kind, _ in acknowledged) > 10, "the loops did too little to test anything"


def test_processes_and_threads_share_one_database(tmp_path: Path, pg_env: str) -> None:
    children = [start(tmp_path / str(seed), "concurrent", seed) for seed in (1, 2)]
    outputs = [child.communicate(timeout=120) for child in children]
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err[-2000:]
    acknowledged = [a for out, _ in outputs for a in acks(out)]
    assert sum(kind == "index" for kind, _ in acknowledged) == 2 * 2 * 15
    assert check_consistent(pg_env, acknowledged) == 60
    store = open_store(Settings(store=pg_env))
    try:
        with store.read() as tx:
            users = tx.list_users(tx.collection("c"), None, 100)
        assert sorted(u.face_count for u in users if u.user_id != "u") == [15] * 4
    finally:
        store.close()
