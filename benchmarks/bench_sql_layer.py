"""What a portable SQL layer would cost the store: its hot statements as the store runs them
(hand-written SQL through sqlite3 / psycopg) against the same statements through SQLAlchemy Core 2.x,
on SQLite and on PostgreSQL, in the same run.

    .venv/bin/pip install 'sqlalchemy>=2'      # not a facepipe dependency: only for this run
    python benchmarks/bench_sql_layer.py [--rounds 7] [--out benchmarks/results/<date>-sql-layer/sql_layer.json]

Each backend gets a fresh store (SQLite: a temporary data directory, WAL, synchronous=FULL,
secure_delete=ON; PostgreSQL: a throwaway server from tests/support/pgserver.py, fsync on,
synchronous_commit on) with one collection of ``--faces`` faces (128-d float32 vectors: 512 bytes),
written through the store itself (PostgreSQL: then ANALYZEd, as autovacuum soon does, so that no
round runs with the plans of an un-analyzed table; SQLite has no statistics, as in the store). Statements (each call is timed alone, from building the statement
to the Python result the store returns):

- ``collection_lookup``: the collection row by name in a write transaction (PostgreSQL: ``FOR UPDATE``,
  one fresh transaction per call so every call takes the row lock), as CollectionRow.
- ``faces_by_id_100``: 100 FaceIds of the collection (SQLite: ``IN (?, ...)``; PostgreSQL: ``= ANY(%s)``),
  as {FaceId: FaceRow}.
- ``face_insert``: the faces INSERT of one face with its vector (face_insert_values), returning its label.
- ``change_append``: the change-log INSERT of one label.
- ``list_faces_1000``: a ListFaces page of 1,000 rows in label order, as FaceRows.

Hand-written: the store's own transaction methods (pipeline.store.db.Tx, pipeline.store.postgres.PostgresTx)
where one method is one statement, and for the two INSERTs (which the store's insert_face runs
together) the store's SQL text with the same driver call and parameters (checked against the store's
source at start). SQLAlchemy: a Table definition of the same schema; ``select()``/``insert()``
constructs built on every call as an application writes them, run through an Engine with its
default compiled cache (the psycopg 3 dialect on PostgreSQL: the same driver underneath). The
transaction around the calls is begun and ended the same way in both and is not timed: explicit
BEGIN / COMMIT on an autocommit connection (as the store does), on one connection held for the run.

Rounds alternate which layer goes first; a round times ``calls`` consecutive calls per statement and
layer and keeps their median; the figure is the median over ``--rounds`` rounds (after one untimed
warm-up round, which also checks that both layers return the same records). Ratio: SQLAlchemy time /
hand-written time. Prints the table and writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

try:
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql as pg_dialect
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("SQLAlchemy is not installed (not a facepipe dependency): .venv/bin/pip install 'sqlalchemy>=2'")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support, when run as a script

import psycopg  # noqa: E402

from pipeline.store.db import Database, Tx, face_insert_values  # noqa: E402
from pipeline.store.postgres import PostgresDatabase, PostgresTx  # noqa: E402
from pipeline.store.records import CollectionRow, FaceRow, NewFace  # noqa: E402
from tests.support.pgserver import TempPostgres  # noqa: E402

DIM = 128
COLLECTION = "bench-sql-layer"
PAGE = 1000
IDS_PER_CALL = 100
FACE_COLUMN_NAMES = (
    "collection_id",
    "face_id",
    "image_id",
    "external_image_id",
    "dedup_key",
    "box_left",
    "box_top",
    "box_width",
    "box_height",
    "confidence",
    "created_at",
    "vector",
)
"""The column order of face_insert_values (and of both backends' faces INSERT)."""

# The store's INSERT statements, verbatim (checked against the store's source by check_store_sql).
SQLITE_FACE_INSERT = (
    "INSERT INTO faces (collection_id, face_id, image_id, external_image_id, dedup_key, box_left, box_top,"
    " box_width, box_height, confidence, created_at, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SQLITE_CHANGE_APPEND = "INSERT INTO changes (collection_id, label, added) VALUES (?, ?, 1)"
PG_FACE_INSERT = (
    "INSERT INTO faces (collection_id, face_id, image_id, external_image_id, dedup_key, box_left,"
    " box_top, box_width, box_height, confidence, created_at, vector)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING label"
)
PG_CHANGE_APPEND = "INSERT INTO changes (collection_id, label, added) VALUES (%s, %s, 1)"

CALLS = {
    "collection_lookup": 300,
    "faces_by_id_100": 100,
    "face_insert": 300,
    "change_append": 300,
    "list_faces_1000": 30,
}
"""Timed calls per statement, layer and round."""


def check_store_sql() -> None:
    """Fail when the store's INSERT text is no longer what this benchmark times."""
    sqlite_source = " ".join(inspect.getsource(Tx.insert_face).split())
    pg_source = " ".join(inspect.getsource(PostgresTx.insert_face).split())
    for text, source in (
        (SQLITE_FACE_INSERT, sqlite_source),
        (SQLITE_CHANGE_APPEND, sqlite_source),
        (PG_FACE_INSERT, pg_source),
        (PG_CHANGE_APPEND, pg_source),
    ):
        words = text.split()
        joined = " ".join(w for w in source.replace('"', " ").split())
        if " ".join(words) not in joined:
            sys.exit(f"the store's SQL changed; update this benchmark: {text!r}")


# --- the schema as SQLAlchemy Core tables ----------------------------------------------------------
def schema() -> tuple[sa.Table, sa.Table, sa.Table]:
    """collections, faces and changes as in pipeline/store/migrations.py and pg_migrations.py."""
    meta = sa.MetaData()
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    collections = sa.Table(
        "collections",
        meta,
        sa.Column("id", big, sa.Identity(always=True), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("arn", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("face_count", big, nullable=False, server_default="0"),
        sa.Column("user_count", big, nullable=False, server_default="0"),
        sa.Column("users_version", big, nullable=False, server_default="0"),
        sa.Column("log_floor", big, nullable=False, server_default="0"),
        sa.Column("tags", sa.Text, nullable=False, server_default="{}"),
        sqlite_autoincrement=True,
    )
    faces = sa.Table(
        "faces",
        meta,
        sa.Column("label", big, sa.Identity(always=True), primary_key=True),
        sa.Column("collection_id", big, nullable=False),
        sa.Column("face_id", sa.Text, nullable=False, unique=True),
        sa.Column("image_id", sa.Text, nullable=False),
        sa.Column("external_image_id", sa.Text),
        sa.Column("dedup_key", sa.Text, nullable=False),
        sa.Column("box_left", sa.Double, nullable=False),
        sa.Column("box_top", sa.Double, nullable=False),
        sa.Column("box_width", sa.Double, nullable=False),
        sa.Column("box_height", sa.Double, nullable=False),
        sa.Column("confidence", sa.Double, nullable=False),
        sa.Column("user_id", sa.Text),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sqlite_autoincrement=True,
    )
    changes = sa.Table(
        "changes",
        meta,
        sa.Column("seq", big, sa.Identity(always=True), primary_key=True),
        sa.Column("collection_id", big, nullable=False),
        sa.Column("label", big, nullable=False),
        sa.Column("added", sa.SmallInteger, nullable=False),
        sqlite_autoincrement=True,
    )
    return collections, faces, changes


COLLECTIONS, FACES, CHANGES = schema()
_COLLECTION_COLS = [COLLECTIONS.c[f.name] for f in fields(CollectionRow)]
_FACE_COLS = [FACES.c[f.name] for f in fields(FaceRow)]


# --- workload ----------------------------------------------------------------------------------------
def new_face(rng: np.random.Generator) -> NewFace:
    """A face with a random unit 128-d vector (512 bytes as float32)."""
    v = rng.normal(size=DIM).astype(np.float32)
    return NewFace(
        face_id=str(uuid.uuid4()),
        image_id=str(uuid.uuid4()),
        external_image_id="photo.jpg",
        dedup_key=uuid.uuid4().hex,
        box_left=0.1,
        box_top=0.2,
        box_width=0.3,
        box_height=0.4,
        confidence=99.9,
        vector=v / np.linalg.norm(v),
    )


class Layer:
    """One way of running the statements on one backend: ``begin(writable)`` gives a handle."""

    name: str

    def transaction(self, writable: bool) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def lookup(self, h: Any, name: str) -> CollectionRow | None:
        raise NotImplementedError

    def faces_by_id(self, h: Any, coll: CollectionRow, ids: list[str]) -> dict[str, FaceRow]:
        raise NotImplementedError

    def face_insert(self, h: Any, coll: CollectionRow, face: NewFace) -> int:
        raise NotImplementedError

    def change_append(self, h: Any, coll: CollectionRow, label: int) -> None:
        raise NotImplementedError

    def list_page(self, h: Any, coll: CollectionRow, after: int) -> list[FaceRow]:
        raise NotImplementedError


class HandSqlite(Layer):
    name = "hand-written"

    def __init__(self, db: Database) -> None:
        self.db = db

    def transaction(self, writable: bool) -> contextlib.AbstractContextManager[Any]:
        return self.db.write() if writable else self.db.read()

    def lookup(self, h: Tx, name: str) -> CollectionRow | None:
        return h.find_collection(name)

    def faces_by_id(self, h: Tx, coll: CollectionRow, ids: list[str]) -> dict[str, FaceRow]:
        return h.faces_by_id(coll, ids)

    def face_insert(self, h: Tx, coll: CollectionRow, face: NewFace) -> int:
        return int(h.conn.execute(SQLITE_FACE_INSERT, face_insert_values(coll, face)).lastrowid or 0)

    def change_append(self, h: Tx, coll: CollectionRow, label: int) -> None:
        h.conn.execute(SQLITE_CHANGE_APPEND, (coll.id, label))

    def list_page(self, h: Tx, coll: CollectionRow, after: int) -> list[FaceRow]:
        return h.list_faces(coll, after, PAGE)


class HandPostgres(Layer):
    name = "hand-written"

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    def transaction(self, writable: bool) -> contextlib.AbstractContextManager[Any]:
        return self.db.write() if writable else self.db.read()

    def lookup(self, h: PostgresTx, name: str) -> CollectionRow | None:
        return h.find_collection(name)  # FOR UPDATE in a write transaction

    def faces_by_id(self, h: PostgresTx, coll: CollectionRow, ids: list[str]) -> dict[str, FaceRow]:
        return h.faces_by_id(coll, ids)

    def face_insert(self, h: PostgresTx, coll: CollectionRow, face: NewFace) -> int:
        row = h.conn.execute(PG_FACE_INSERT, face_insert_values(coll, face)).fetchone()
        assert row is not None
        return int(row[0])

    def change_append(self, h: PostgresTx, coll: CollectionRow, label: int) -> None:
        h.conn.execute(PG_CHANGE_APPEND, (coll.id, label))

    def list_page(self, h: PostgresTx, coll: CollectionRow, after: int) -> list[FaceRow]:
        return h.list_faces(coll, after, PAGE)


class Alchemy(Layer):
    """SQLAlchemy Core on an Engine (default compiled cache), one connection held for the run."""

    name = "sqlalchemy"

    def __init__(self, engine: sa.Engine, begin_write: str, begin_read: str, any_array: bool = False) -> None:
        self.engine = engine
        self.conn = engine.connect()
        self.begin_write = begin_write
        self.begin_read = begin_read
        self.any_array = any_array

    @contextlib.contextmanager
    def _transaction(self, writable: bool) -> Iterator[sa.Connection]:
        self.conn.exec_driver_sql(self.begin_write if writable else self.begin_read)
        try:
            yield self.conn
            self.conn.exec_driver_sql("COMMIT")
        except BaseException:
            self.conn.exec_driver_sql("ROLLBACK")
            raise

    def transaction(self, writable: bool) -> contextlib.AbstractContextManager[Any]:
        return self._transaction(writable)

    def lookup(self, h: sa.Connection, name: str) -> CollectionRow | None:
        stmt = sa.select(*_COLLECTION_COLS).where(COLLECTIONS.c.name == name).with_for_update()
        row = h.execute(stmt).one_or_none()
        return None if row is None else CollectionRow(**row._mapping)

    def faces_by_id(self, h: sa.Connection, coll: CollectionRow, ids: list[str]) -> dict[str, FaceRow]:
        wanted = list(dict.fromkeys(ids))
        if self.any_array:  # PostgreSQL only: one array parameter, as the store sends it
            match = FACES.c.face_id == sa.any_(sa.bindparam("ids", wanted, type_=pg_dialect.ARRAY(sa.Text)))
        else:  # the portable form: one bound parameter per id
            match = FACES.c.face_id.in_(wanted)
        stmt = sa.select(*_FACE_COLS).where(FACES.c.collection_id == coll.id, match)
        return {r.face_id: FaceRow(**r._mapping) for r in h.execute(stmt)}

    def face_insert(self, h: sa.Connection, coll: CollectionRow, face: NewFace) -> int:
        values = dict(zip(FACE_COLUMN_NAMES, face_insert_values(coll, face), strict=True))
        result = h.execute(sa.insert(FACES).values(**values))
        return int(result.inserted_primary_key[0])

    def change_append(self, h: sa.Connection, coll: CollectionRow, label: int) -> None:
        h.execute(sa.insert(CHANGES).values(collection_id=coll.id, label=label, added=1))

    def list_page(self, h: sa.Connection, coll: CollectionRow, after: int) -> list[FaceRow]:
        stmt = (
            sa.select(*_FACE_COLS)
            .where(FACES.c.collection_id == coll.id, FACES.c.label > after)
            .order_by(FACES.c.label)
            .limit(PAGE)
        )
        return [FaceRow(**r._mapping) for r in h.execute(stmt)]

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


def sqlite_engine(path: Path) -> sa.Engine:
    """An Engine on the store's file with the store's connection settings."""
    engine = sa.create_engine(f"sqlite:///{path}", isolation_level="AUTOCOMMIT")

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        for pragma in (
            "busy_timeout = 60000",
            "journal_mode = WAL",
            "synchronous = FULL",
            "secure_delete = ON",
        ):
            dbapi_conn.execute(f"PRAGMA {pragma}")

    return engine


def postgres_engine(url: str) -> sa.Engine:
    """An Engine (psycopg 3 dialect) with the store's connection settings."""
    engine = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )

    @sa.event.listens_for(engine, "connect")
    def _settings(dbapi_conn: psycopg.Connection[Any], _record: Any) -> None:
        dbapi_conn.execute("SET synchronous_commit = on; SET lock_timeout = '60s'")

    return engine


# --- timing ------------------------------------------------------------------------------------------
class Workload:
    """The seeded collection and the argument sequences both layers get."""

    def __init__(self, coll: CollectionRow, face_ids: list[str], labels: list[int], seed: int) -> None:
        self.coll = coll
        self.face_ids = face_ids
        self.labels = labels
        self.rng = random.Random(seed)
        self.vectors = np.random.default_rng(seed)

    def id_lists(self, n: int) -> list[list[str]]:
        return [self.rng.sample(self.face_ids, IDS_PER_CALL) for _ in range(n)]

    def page_starts(self, n: int) -> list[int]:
        last_start = len(self.labels) - PAGE - 1
        return [self.labels[self.rng.randrange(0, last_start)] for _ in range(n)]


def time_batch(layer: Layer, case: str, work: Workload, calls: int) -> list[float]:
    """Per-call seconds of ``calls`` calls of ``case`` on ``layer``."""
    coll = work.coll
    out: list[float] = []
    clock = time.perf_counter
    if case == "collection_lookup":  # one write transaction per call: every call takes the row lock
        for _ in range(calls):
            with layer.transaction(writable=True) as h:
                t0 = clock()
                layer.lookup(h, coll.name)
                out.append(clock() - t0)
        return out
    if case == "faces_by_id_100":
        args = work.id_lists(calls)
        with layer.transaction(writable=False) as h:
            for ids in args:
                t0 = clock()
                layer.faces_by_id(h, coll, ids)
                out.append(clock() - t0)
        return out
    if case == "list_faces_1000":
        starts = work.page_starts(calls)
        with layer.transaction(writable=False) as h:
            for after in starts:
                t0 = clock()
                layer.list_page(h, coll, after)
                out.append(clock() - t0)
        return out
    if case == "face_insert":
        new = [new_face(work.vectors) for _ in range(calls)]
        with layer.transaction(writable=True) as h:
            for face in new:
                t0 = clock()
                layer.face_insert(h, coll, face)
                out.append(clock() - t0)
        return out
    if case == "change_append":
        labels = [work.rng.choice(work.labels) for _ in range(calls)]
        with layer.transaction(writable=True) as h:
            for label in labels:
                t0 = clock()
                layer.change_append(h, coll, label)
                out.append(clock() - t0)
        return out
    raise ValueError(case)


def check_same_results(layers: list[Layer], work: Workload) -> None:
    """Both layers return the same records for the same reads (the comparison is like for like)."""
    ids = work.id_lists(1)[0]
    after = work.page_starts(1)[0]
    answers = []
    for layer in layers:
        with layer.transaction(writable=True) as h:
            found = layer.lookup(h, work.coll.name)
        with layer.transaction(writable=False) as h:
            answers.append(
                (found, layer.faces_by_id(h, work.coll, ids), layer.list_page(h, work.coll, after))
            )
    first = answers[0]
    for other, layer in zip(answers[1:], layers[1:], strict=True):
        if other != first:
            sys.exit(f"{layer.name} returned other records than {layers[0].name}")
    if len(first[1]) != IDS_PER_CALL or len(first[2]) != PAGE:
        sys.exit("the seeded collection is too small for the statements timed")


def seed(
    tx_context: Callable[[], contextlib.AbstractContextManager[Any]], faces: int, rng: np.random.Generator
) -> Workload:
    """Create the collection and ``faces`` faces through the store; the workload on them."""
    with tx_context() as tx:
        coll = tx.insert_collection(COLLECTION, "arn:aws:rekognition:bench", "7.0", DIM, {})
    face_ids, labels = [], []
    for start in range(0, faces, 1000):
        with tx_context() as tx:
            for _ in range(min(1000, faces - start)):
                face = new_face(rng)
                labels.append(tx.insert_face(coll, face))
                face_ids.append(face.face_id)
    with tx_context() as tx:
        coll = tx.collection(COLLECTION)
    return Workload(coll, face_ids, labels, seed=7)


def median_us(values: list[float]) -> float:
    return statistics.median(values) * 1e6


def cpu_description() -> dict[str, Any]:
    """The CPU as /proc/cpuinfo names it, with family/model (Zen 4 is family 25, models 0x10-0x1f
    and 0x60-0x7f, 0xa0-0xaf) and whether AVX-512 is there."""
    info: dict[str, Any] = {"model_name": platform.processor() or platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name":
            info["model_name"] = value.strip()
        elif key == "cpu family":
            info["family"] = int(value)
        elif key == "model" and "model" not in info:
            info["model"] = int(value)
        elif key == "flags":
            info["avx512f"] = "avx512f" in value.split()
            break
    family, model = info.get("family"), info.get("model", -1)
    zen4 = family == 25 and (0x10 <= model <= 0x1F or 0x60 <= model <= 0x7F or 0xA0 <= model <= 0xAF)
    info["microarchitecture"] = "Zen 4" if zen4 else "unknown"
    info["usable_cores"] = len(os.sched_getaffinity(0))
    return info


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_store_sql()
    rng = np.random.default_rng(1)
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        backends: list[tuple[str, Workload, list[Layer]]] = []
        if "sqlite" in args.backends:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sql-layer-")))
            db = Database(folder)
            stack.callback(db.close)
            work = seed(db.write, args.faces, rng)
            alchemy = Alchemy(sqlite_engine(db.path), "BEGIN IMMEDIATE", "BEGIN")
            stack.callback(alchemy.close)
            backends.append(("sqlite", work, [HandSqlite(db), alchemy]))
        if "postgresql" in args.backends:
            server = TempPostgres.start()
            stack.callback(server.close)
            url = server.new_database()
            pdb = PostgresDatabase(url)
            stack.callback(pdb.close)
            work = seed(pdb.write, args.faces, rng)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE")  # as autovacuum would: no round runs on an un-analyzed table
                row = conn.execute("SHOW server_version").fetchone()
                results["postgresql_version"] = str(row[0]) if row else "?"
            begin_write, begin_read = (
                "BEGIN ISOLATION LEVEL READ COMMITTED",
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            )
            portable = Alchemy(postgres_engine(url), begin_write, begin_read)
            native = Alchemy(postgres_engine(url), begin_write, begin_read, any_array=True)
            native.name = "sqlalchemy-any-array"
            stack.callback(portable.close)
            stack.callback(native.close)
            backends.append(("postgresql", work, [HandPostgres(pdb), portable, native]))

        for _, work, layers in backends:
            check_same_results(layers, work)
        timings: dict[str, dict[str, dict[str, list[float]]]] = {
            b: {c: {layer.name: [] for layer in layers} for c in CALLS} for b, _, layers in backends
        }
        for round_no in range(args.rounds + 1):  # round 0: warm-up (caches, prepared statements)
            for backend, work, layers in backends:
                for case, calls in CALLS.items():
                    # which layer goes first rotates from round to round
                    order = layers[round_no % len(layers) :] + layers[: round_no % len(layers)]
                    for layer in order:
                        if case != "faces_by_id_100" and layer.name == "sqlalchemy-any-array":
                            continue  # only faces_by_id has a PostgreSQL-only variant
                        per_call = time_batch(layer, case, work, calls)
                        if round_no:
                            timings[backend][case][layer.name].append(median_us(per_call))
            if round_no:
                print(f"round {round_no}/{args.rounds} done", file=sys.stderr, flush=True)

    table: dict[str, Any] = {}
    for backend, cases in timings.items():
        table[backend] = {}
        for case, by_layer in cases.items():
            hand = statistics.median(by_layer["hand-written"])
            entry: dict[str, Any] = {"calls_per_round": CALLS[case]}
            for name, rounds in by_layer.items():
                if not rounds:
                    continue
                med = statistics.median(rounds)
                entry[name] = {
                    "median_us": round(med, 2),
                    "round_medians_us": [round(x, 2) for x in rounds],
                    "ratio_to_hand_written": round(med / hand, 3),
                    "extra_us": round(med - hand, 2),
                }
            table[backend][case] = entry
    results.update(
        {
            "cpu": cpu_description(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "psycopg": psycopg.__version__,
            "sqlalchemy": sa.__version__,
            "faces_in_collection": args.faces,
            "rounds": args.rounds,
            "statements": table,
        }
    )
    return results


def print_table(results: dict[str, Any]) -> None:
    print("| backend | statement | hand-written µs | SQLAlchemy µs | ratio | extra µs |")
    print("|---|---|---:|---:|---:|---:|")
    for backend, cases in results["statements"].items():
        for case, entry in cases.items():
            hand = entry["hand-written"]["median_us"]
            for name in ("sqlalchemy", "sqlalchemy-any-array"):
                if name in entry:
                    label = case if name == "sqlalchemy" else f"{case} (SQLAlchemy `any_()` array)"
                    e = entry[name]
                    print(
                        f"| {backend} | {label} | {hand:.1f} | {e['median_us']:.1f} |"
                        f" {e['ratio_to_hand_written']:.2f}x | {e['extra_us']:+.1f} |"
                    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (after one warm-up round)")
    parser.add_argument("--faces", type=int, default=5000, help="faces seeded in the collection")
    parser.add_argument(
        "--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"]
    )
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = parser.parse_args()
    results = run(args)
    print_table(results)
    text = json.dumps(results, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
