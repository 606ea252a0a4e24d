"""What the PostgreSQL store adds or must keep on its own: writers on several "servers" (FacePipe
objects with their own pools) at once, schema and connection errors, a server restart, the change
notifications between processes, the shared replay guard, and VACUUM after deletions."""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import psycopg
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from psycopg import sql

from pipeline.config import Settings
from pipeline.errors import ConflictException, InternalServerError, ServiceQuotaExceededException
from pipeline.protocol.sigv4 import ReplayedSignatureError, SignedRequest, SigV4Verifier
from pipeline.service import FacePipe
from pipeline.store import NewFace
from pipeline.store.pg_migrations import SCHEMA_VERSION
from pipeline.store.postgres import CHANNEL, ChangeListener, PostgresStore
from tests.store.test_tokens import assert_forged_keys_are_refused
from tests.support.pgserver import TempPostgres
from tests.support.server import free_port
from tests.support.synthetic_faces import LinearEngine, index_vectors, person

SERVERS = 2
"""FacePipe objects per test, each with its own store, pool and listener: two servers' worth."""


@pytest.fixture()
def pipes(pg_url: str, tmp_path: Path) -> Iterator[list[FacePipe]]:
    """Two FacePipes on one fresh database, with collection "c" created through the first."""
    made = [
        FacePipe(Settings(data_dir=tmp_path / f"s{i}", store=pg_url), engine=LinearEngine())
        for i in range(SERVERS)
    ]
    made[0].call("CreateCollection", {"CollectionId": "c"})
    yield made
    for fp in made:
        fp.close()


def run_all(calls: list[Callable[[], Any]], workers: int = 8) -> list[Any]:
    """Run the calls at once on threads; each result or the exception it raised."""
    barrier = threading.Barrier(min(workers, len(calls)))

    def one(call: Callable[[], Any]) -> Any:
        barrier.wait(timeout=10)
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, calls))


def face_user_counts(url: str) -> tuple[dict[str, int], dict[str, int]]:
    """(faces per user from the faces table, face_count column per user) straight from PostgreSQL."""
    with psycopg.connect(url) as conn:
        counted = dict(
            conn.execute("SELECT user_id, count(*) FROM faces WHERE user_id IS NOT NULL GROUP BY 1")
        )
        stored = dict(conn.execute("SELECT user_id, face_count FROM users"))
    return counted, stored


def test_the_100_face_limit_holds_under_concurrent_writers(pipes: list[FacePipe], pg_url: str) -> None:
    rng = np.random.default_rng(1)
    faces = index_vectors(pipes[0], "c", person(rng, 160))
    pipes[1].call("CreateUser", {"CollectionId": "c", "UserId": "u"})
    chunks = [faces[i : i + 10] for i in range(0, 160, 10)]
    calls = [
        (
            lambda fp=pipes[i % SERVERS], chunk=chunk: fp.call(  # type: ignore[misc]
                "AssociateFaces",
                {"CollectionId": "c", "UserId": "u", "FaceIds": chunk, "UserMatchThreshold": 0},
            )
        )
        for i, chunk in enumerate(chunks)
    ]
    results = run_all(calls)
    associated = [f["FaceId"] for r in results if isinstance(r, dict) for f in r["AssociatedFaces"]]
    assert len(associated) == len(set(associated)) == 100
    for r in results:
        assert isinstance(r, (dict, ServiceQuotaExceededException)), r
    counted, stored = face_user_counts(pg_url)
    assert counted == stored == {"u": 100}


def test_a_face_goes_to_one_user_when_two_servers_race(pipes: list[FacePipe], pg_url: str) -> None:
    rng = np.random.default_rng(2)
    faces = index_vectors(pipes[0], "c", person(rng, 30))
    users = [f"u{i}" for i in range(6)]
    for user in users:
        pipes[0].call("CreateUser", {"CollectionId": "c", "UserId": user})
    calls = [
        (
            lambda fp=pipes[i % SERVERS], user=user: fp.call(  # type: ignore[misc]
                "AssociateFaces",
                {"CollectionId": "c", "UserId": user, "FaceIds": faces, "UserMatchThreshold": 0},
            )
        )
        for i, user in enumerate(users)
    ]
    results = run_all(calls)
    owner: dict[str, str] = {}
    for user, result in zip(users, results, strict=True):
        assert isinstance(result, dict), result
        for face in result["AssociatedFaces"]:
            assert face["FaceId"] not in owner, "one face reported associated to two users"
            owner[face["FaceId"]] = user
    assert sorted(owner) == sorted(faces)
    listed = pipes[1].call("ListFaces", {"CollectionId": "c", "MaxResults": 100})["Faces"]
    assert {f["FaceId"]: f["UserId"] for f in listed} == owner
    counted, stored = face_user_counts(pg_url)
    assert {u: n for u, n in stored.items() if n} == counted


def test_unique_user_ids_and_tokens_across_servers(pipes: list[FacePipe]) -> None:
    plain = [
        (lambda fp=pipes[i % SERVERS]: fp.call("CreateUser", {"CollectionId": "c", "UserId": "same"}))  # type: ignore[misc]
        for i in range(8)
    ]
    results = run_all(plain)
    assert sum(r == {} for r in results) == 1
    assert all(isinstance(r, ConflictException) for r in results if r != {})
    tokened = [
        (
            lambda fp=pipes[i % SERVERS]: fp.call(  # type: ignore[misc]
                "CreateUser", {"CollectionId": "c", "UserId": "tok", "ClientRequestToken": "t-1"}
            )
        )
        for i in range(8)
    ]
    assert run_all(tokened) == [{}] * 8  # one creation; the others replay its stored response
    described = pipes[1].call("DescribeCollection", {"CollectionId": "c"})
    assert described["UserCount"] == 2


def test_a_write_on_one_server_is_searched_on_the_other_at_once(pipes: list[FacePipe]) -> None:
    a, b = pipes
    rng = np.random.default_rng(3)
    first = index_vectors(a, "c", person(rng, 3), prefix="a")
    b.call("SearchFaces", {"CollectionId": "c", "FaceId": first[0]})  # b builds its index
    for i in range(20):
        (new,) = index_vectors(a, "c", person(rng, 1), prefix=f"n{i}")
        found = b.call("SearchFaces", {"CollectionId": "c", "FaceId": new, "FaceMatchThreshold": 0})
        assert len(found["FaceMatches"]) == 3 + i  # every face but the searched one, no wait
    a.call("DeleteCollection", {"CollectionId": "c"})
    with pytest.raises(Exception, match="does not exist"):
        b.call("SearchFaces", {"CollectionId": "c", "FaceId": first[0]})


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> float:
    """Seconds until ``condition()`` held (AssertionError after ``timeout``)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "condition not reached in time"
        time.sleep(0.001)
    return time.monotonic() - start


def test_notifications_erase_deleted_data_from_the_other_servers_memory(pipes: list[FacePipe]) -> None:
    a, b = pipes
    rng = np.random.default_rng(4)
    faces = index_vectors(a, "c", person(rng, 5))
    b.call("SearchFaces", {"CollectionId": "c", "FaceId": faces[0]})
    store_b = b.store
    assert isinstance(store_b, PostgresStore) and store_b.listener is not None
    assert store_b.listener.listening.wait(5)
    with store_b.read() as tx:
        coll = tx.collection("c")
    with store_b.read() as tx:
        deleted = {r.label for r in tx.list_faces(coll, 0, 100) if r.face_id in faces[:2]}
    held = store_b.indexes.cached()[0]
    assert deleted <= set(held.labels().tolist())
    a.call("DeleteFaces", {"CollectionId": "c", "FaceIds": faces[:2]})
    wait_for(lambda: not deleted & set(held.labels().tolist()))  # b erased them without a search
    a.call("DeleteCollection", {"CollectionId": "c"})
    wait_for(lambda: not store_b.indexes.holds(coll.id))


def test_newer_schema_is_refused(pg_url: str) -> None:
    PostgresStore(pg_url, listen=False).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE facepipe_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(InternalServerError, match="schema version 99, written by a newer facepipe"):
        PostgresStore(pg_url, listen=False)


def test_unreachable_server_wrong_password_and_missing_database(pg_server: TempPostgres) -> None:
    start = time.monotonic()
    nowhere = f"postgresql://facepipe:pw@127.0.0.1:{free_port()}/x"
    with pytest.raises(InternalServerError, match=r"facepipe@127\.0\.0\.1:\d+/x is unreachable") as info:
        PostgresStore(nowhere)
    assert "pw" not in str(info.value).replace("unreachable", "")
    with pytest.raises(InternalServerError, match="refused the credentials") as info:
        PostgresStore(pg_server.url(password="not-the-password"))
    assert "not-the-password" not in str(info.value)
    with pytest.raises(InternalServerError, match="no such database"):
        PostgresStore(pg_server.url("no_such_db"))
    assert time.monotonic() - start < 10


def test_servers_opening_a_new_database_together_migrate_it_once(pg_url: str) -> None:
    stores = run_all([lambda: PostgresStore(pg_url, listen=False) for _ in range(4)])
    assert all(isinstance(s, PostgresStore) for s in stores), stores
    for s in stores:
        s.close()
    with psycopg.connect(pg_url) as conn:
        meta = dict(conn.execute("SELECT key, value FROM facepipe_meta").fetchall())
    assert meta["schema_version"] == str(SCHEMA_VERSION) and len(meta) == 2
    assert meta["store_id"] == stores[0].database.store_id != ""


def test_replay_guard_is_shared_and_atomic(pg_url: str) -> None:
    a, b = PostgresStore(pg_url, listen=False), PostgresStore(pg_url, listen=False)
    try:
        now = time.time()
        assert a.remember_signature("sig-1", now + 300) is True
        assert b.remember_signature("sig-1", now + 300) is False  # seen by the other server
        assert a.remember_signature("sig-old", now - 1) is True
        assert b.remember_signature("sig-old", now + 300) is True  # its record had expired
        results = run_all(
            [lambda s=(a, b)[i % 2]: s.remember_signature("sig-race", now + 300) for i in range(8)]
        )
        assert sorted(results) == [False] * 7 + [True]
    finally:
        a.close()
        b.close()


def test_a_database_restart_fails_requests_in_flight_cleanly_and_later_ones_succeed(
    pg_server: TempPostgres, pipes: list[FacePipe]
) -> None:
    a, b = pipes
    rng = np.random.default_rng(5)
    index_vectors(a, "c", person(rng, 3))
    store = a.store
    inside, release = threading.Event(), threading.Event()
    outcome: list[BaseException] = []

    def in_flight() -> None:
        try:
            with store.write() as tx:
                coll = tx.collection("c")
                tx.insert_face(
                    coll, NewFace("lost-face", "i", None, "k", 0, 0, 1, 1, 99.0, person(rng, 1)[0])
                )
                inside.set()
                release.wait(30)
        except BaseException as exc:
            outcome.append(exc)

    writer = threading.Thread(target=in_flight)
    writer.start()
    assert inside.wait(10)
    pg_server.restart()
    release.set()
    writer.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], InternalServerError), outcome
    assert "retry" in str(outcome[0]), outcome[0]
    for n, fp in enumerate((a, b)):  # every pooled connection died; the next calls get fresh ones
        assert fp.call("DescribeCollection", {"CollectionId": "c"})["FaceCount"] == 3 + n
        index_vectors(fp, "c", person(rng, 1), prefix=f"after-{n}-")
    assert b.call("DescribeCollection", {"CollectionId": "c"})["FaceCount"] == 5
    assert isinstance(b.store, PostgresStore) and b.store.listener is not None
    assert b.store.listener.listening.wait(10), "the listener did not reconnect"


def test_deletions_are_vacuumed(pipes: list[FacePipe], pg_url: str) -> None:
    rng = np.random.default_rng(6)
    faces = index_vectors(pipes[0], "c", person(rng, 40))
    pipes[1].call("DeleteFaces", {"CollectionId": "c", "FaceIds": faces[:20]})
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT n_dead_tup, vacuum_count FROM pg_stat_user_tables WHERE relname = 'faces'"
        ).fetchone()
    assert row is not None and row[1] >= 1 and row[0] == 0


def signed_request(at: float) -> SignedRequest:
    """A CreateCollection request signed by botocore at ``at`` (epoch s)."""
    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:8080/",
        data=b'{"CollectionId": "c"}',
        headers={
            "X-Amz-Target": "RekognitionService.CreateCollection",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    when = dt.datetime.fromtimestamp(at, tz=dt.timezone.utc).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(Credentials("AKIDPG", "pg-secret"), "rekognition", "us-east-1").add_auth(request)
    headers = [*request.prepare().headers.items(), ("Host", "127.0.0.1:8080")]
    return SignedRequest("POST", "/", "", headers, b'{"CollectionId": "c"}')


def test_a_request_accepted_by_one_server_is_a_replay_on_another(pg_url: str) -> None:
    at = 1_700_000_000.0
    stores = [PostgresStore(pg_url, listen=False) for _ in range(2)]
    verifiers = [SigV4Verifier({"AKIDPG": "pg-secret"}, clock=lambda: at + 1) for _ in stores]
    for verifier, store in zip(verifiers, stores, strict=True):
        verifier.replays = store.replay_guard()  # type: ignore[assignment]  # the hook for several servers
    try:
        request = signed_request(at)
        assert verifiers[0].verify(request).access_key_id == "AKIDPG"
        with pytest.raises(ReplayedSignatureError):
            verifiers[1].verify(request)
        assert verifiers[1].verify(signed_request(at + 1)).access_key_id == "AKIDPG"  # signed anew
    finally:
        for store in stores:
            store.close()


def test_facepipe_store_selects_the_backend_everywhere(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FACEPIPE_STORE", pg_url)
    assert Settings.from_env().store == Settings().store == pg_url
    fp = FacePipe(Settings.from_env(data_dir=tmp_path), engine=LinearEngine())
    try:
        assert isinstance(fp.store, PostgresStore)
        fp.call("CreateCollection", {"CollectionId": "from-env"})
    finally:
        fp.close()
    monkeypatch.delenv("FACEPIPE_STORE")
    sqlite = FacePipe(Settings.from_env(data_dir=tmp_path), engine=LinearEngine())
    try:
        assert not isinstance(sqlite.store, PostgresStore)  # the embedded default
        assert sqlite.call("ListCollections", {})["CollectionIds"] == []
    finally:
        sqlite.close()


def test_a_store_setting_that_is_no_postgresql_url_is_refused() -> None:
    with pytest.raises(ValueError, match=r"FACEPIPE_STORE.*postgresql://"):
        PostgresStore("mysql://root:secret@db/x")


def _database_with_a_natural_collation(server: TempPostgres) -> str | None:
    """The URL of a new database whose default collation sorts 'B' between 'a' and 'c' (ICU en-US,
    else libc en_US.UTF-8), or None when the cluster supports neither."""
    name = "natural_" + secrets.token_hex(6)
    attempts = (
        f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'",
        f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'en_US.UTF-8' LC_CTYPE 'en_US.UTF-8'",
    )
    with psycopg.connect(server.url(), autocommit=True) as conn:
        for statement in attempts:
            try:
                conn.execute(statement.encode())
            except psycopg.Error:
                continue
            return server.url(name)
    return None


def test_pagination_returns_every_name_under_a_non_c_collation(
    pg_server: TempPostgres, tmp_path: Path
) -> None:
    url = _database_with_a_natural_collation(pg_server)
    if url is None:
        pytest.skip("this PostgreSQL cluster has neither ICU nor the en_US.UTF-8 locale")
    fp = FacePipe(Settings(data_dir=tmp_path, store=url), engine=LinearEngine())
    try:
        names = ["a", "B", "c"]
        for name in names:
            fp.call("CreateCollection", {"CollectionId": name})
            fp.call("CreateUser", {"CollectionId": "a", "UserId": name})

        def paged(
            operation: str, params: dict[str, Any], key: Callable[[dict[str, Any]], list[str]]
        ) -> list[str]:
            seen: list[str] = []
            token: str | None = None
            for _ in range(10):
                page = fp.call(
                    operation, {**params, "MaxResults": 1, **({"NextToken": token} if token else {})}
                )
                seen += key(page)
                token = page.get("NextToken")
                if not token:
                    break
            return seen

        assert paged("ListCollections", {}, lambda p: p["CollectionIds"]) == sorted(names)
        users = paged("ListUsers", {"CollectionId": "a"}, lambda p: [u["UserId"] for u in p["Users"]])
        assert users == sorted(names)
    finally:
        fp.close()


def test_the_listener_survives_a_failed_catch_up_after_reconnecting(pg_url: str) -> None:
    """A resync that fails (the pool unreachable, say) is logged; the listener keeps listening."""
    applied: list[int] = []
    resyncs: list[int] = []

    def failing_resync() -> None:
        resyncs.append(1)
        raise InternalServerError("no connection to the PostgreSQL store within 10 s")

    listener = ChangeListener(pg_url, applied.append, failing_resync)
    listener.start()
    try:
        assert listener.listening.wait(10)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                " AND datname = current_database() AND query ILIKE 'LISTEN%%'"
            )
            deadline = time.monotonic() + 10
            while not resyncs and time.monotonic() < deadline:
                time.sleep(0.02)
            assert resyncs, "the listener did not reconnect"
            assert listener.listening.wait(10) and listener.is_alive()
            conn.execute(sql.SQL("NOTIFY {}, '7'").format(sql.Identifier(CHANNEL)))
        deadline = time.monotonic() + 10
        while not applied and time.monotonic() < deadline:
            time.sleep(0.02)
        assert applied == [7]
    finally:
        listener.stop()


def test_an_unparseable_url_is_refused_without_its_password() -> None:
    with pytest.raises(InternalServerError, match=r"cannot be parsed \(check its percent-encoding\)") as info:
        PostgresStore("postgresql://u:sec%zzret@127.0.0.1/db", listen=False)
    assert "sec" not in str(info.value) and info.value.__cause__ is None


def test_delete_collection_vacuums_once(pipes: list[FacePipe], pg_url: str) -> None:
    rng = np.random.default_rng(8)
    index_vectors(pipes[0], "c", person(rng, 5))

    def vacuums() -> int:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'faces'"
            ).fetchone()
        assert row is not None
        return int(row[0])

    before = vacuums()
    pipes[0].call("DeleteCollection", {"CollectionId": "c"})
    assert vacuums() == before + 1


def test_a_failing_first_statement_returns_its_connection_to_the_pool(pg_url: str) -> None:
    store = PostgresStore(pg_url, listen=False)
    try:
        for _ in range(3):
            with pytest.raises(psycopg.errors.DivisionByZero):
                store.database._begin("SELECT 1 / 0")
        deadline = time.monotonic() + 5
        while True:  # the pool may still be adding a connection it started to grow by
            stats = store.database.pool.get_stats()
            if stats["pool_size"] == stats["pool_available"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert stats["pool_size"] == stats["pool_available"], stats  # none left checked out
    finally:
        store.close()


def test_forged_pagination_keys_are_refused(pg_url: str, tmp_path: Path) -> None:
    fp = FacePipe(Settings(data_dir=tmp_path, store=pg_url), engine=LinearEngine())
    try:
        assert_forged_keys_are_refused(fp)
    finally:
        fp.close()
