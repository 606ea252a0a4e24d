"""The PostgreSQL store against the SQLite store, in the same run, and the time from a write on one
process to its application in another process's index.

    python benchmarks/bench_postgres_store.py [--rounds 3] [--faces 10000] [--out results/postgres.json]

A throwaway PostgreSQL server is started on a loopback port (tests/support/pgserver.py; fsync on,
synchronous_commit on), so both stores make durable commits on the same disk. Rounds alternate
between the backends (SQLite, PostgreSQL, SQLite, ...), each on a fresh store, in this process:

- IndexFaces: one face per call through FacePipe.call (a store transaction each): calls/s.
- AssociateFaces: one candidate face per call, UserMatchThreshold 0 so every call associates,
  users of at most 90 faces: calls/s.
- SearchFaces: by FaceId in a collection of ``--faces`` synthetic 128-d faces (exact index), after
  the index is built: latency p50 (it includes the catch-up check and reading the matched rows).

Visibility: a child process holds the collection's index and LISTENs; the parent writes one face at
a time and the child records when its listener has applied each change. Reported: p50/p99 of
(applied in the child - the parent's commit returned), ms. A search on the child never waits for
this (it catches up from the database first); the figure bounds how long the child holds a
deleted face's vector in memory, and how stale its index is before the next search. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support, when run as a script

from pipeline.bench.machine import cpu_model  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.service import FacePipe  # noqa: E402
from pipeline.store import NewFace  # noqa: E402
from pipeline.store.postgres import PostgresStore  # noqa: E402
from tests.support.pgserver import TempPostgres  # noqa: E402
from tests.support.synthetic_faces import LinearEngine, index_vectors  # noqa: E402

DIM = 128


class BenchEngine(LinearEngine):
    """LinearEngine at 128 dimensions (the default model's)."""

    embedding_dim = DIM


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def open_pipe(store: str | None, root: Path) -> FacePipe:
    root.mkdir(parents=True, exist_ok=True)
    return FacePipe(Settings(data_dir=root, cache_dir=root / "cache", store=store), engine=BenchEngine())


def index_calls(fp: FacePipe, rng: np.random.Generator, calls: int) -> float:
    fp.call("CreateCollection", {"CollectionId": "ix"})
    vectors = list(unit_rows(rng, calls))
    start = time.perf_counter()
    for i, vector in enumerate(vectors):
        index_vectors(fp, "ix", [vector], prefix=f"i{i}-")
    return calls / (time.perf_counter() - start)


def associate_calls(fp: FacePipe, rng: np.random.Generator, calls: int) -> float:
    fp.call("CreateCollection", {"CollectionId": "as"})
    faces = index_vectors(fp, "as", list(unit_rows(rng, calls)), prefix="a")
    start = time.perf_counter()
    for i, face_id in enumerate(faces):
        user = f"u{i // 90}"
        if i % 90 == 0:
            fp.call("CreateUser", {"CollectionId": "as", "UserId": user})
        fp.call(
            "AssociateFaces",
            {"CollectionId": "as", "UserId": user, "FaceIds": [face_id], "UserMatchThreshold": 0},
        )
    return calls / (time.perf_counter() - start)


def face_uuid(i: int) -> str:
    """A FaceId-shaped id for synthetic face ``i``."""
    return f"00000000-0000-4000-8000-{i:012d}"


def fill(fp: FacePipe, name: str, vectors: np.ndarray) -> None:
    fp.call("CreateCollection", {"CollectionId": name})
    for start in range(0, len(vectors), 2000):
        with fp.store.write() as tx:
            coll = tx.collection(name)
            for i, v in enumerate(vectors[start : start + 2000], start):
                tx.insert_face(coll, NewFace(face_uuid(i), "img", None, f"k{i}", 0, 0, 1, 1, 99.0, v))


def search_latency(fp: FacePipe, faces: int, queries: int) -> float:
    rng = np.random.default_rng(7)
    fill(fp, "se", unit_rows(rng, faces))
    ids = [face_uuid(int(i)) for i in rng.integers(0, faces, queries)]
    fp.call("SearchFaces", {"CollectionId": "se", "FaceId": ids[0]})  # builds the index
    times = []
    for face_id in ids:
        start = time.perf_counter()
        fp.call("SearchFaces", {"CollectionId": "se", "FaceId": face_id, "MaxFaces": 10})
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def watcher(url: str, ready: Any, done: Any, expected: int) -> None:
    """Child: hold the collection's index, record when the listener applied each change."""
    store = PostgresStore(url)
    applied: list[float] = []
    original = store._apply_change

    def timed(collection_id: int) -> None:
        original(collection_id)
        applied.append(time.monotonic())

    store._apply_change = timed  # type: ignore[method-assign]
    assert store.listener is not None
    store.listener.apply = timed
    with store.read() as tx:
        coll = tx.collection("vis")
    store.index_of(coll)
    store.listener.listening.wait(10)
    ready.set()
    deadline = time.monotonic() + 60
    while len(applied) < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    done.put(applied)
    store.close()


def visibility(url: str, writes: int) -> dict[str, float]:
    fp = open_pipe(url, Path(tempfile.mkdtemp(prefix="bench-vis-")))
    fp.call("CreateCollection", {"CollectionId": "vis"})
    index_vectors(fp, "vis", list(unit_rows(np.random.default_rng(1), 5)), prefix="seed")
    ctx = mp.get_context("spawn")
    ready, done = ctx.Event(), ctx.Queue()
    child = ctx.Process(target=watcher, args=(url, ready, done, writes))
    child.start()
    assert ready.wait(60)
    rng = np.random.default_rng(2)
    committed = []
    for i in range(writes):
        index_vectors(fp, "vis", [unit_rows(rng, 1)[0]], prefix=f"v{i}-")
        committed.append(time.monotonic())
        time.sleep(0.02)  # one write at a time: each notification is its own
    applied = done.get(timeout=90)
    child.join(30)
    fp.close()
    lags = sorted((a - c) * 1000 for a, c in zip(applied, committed, strict=False))
    return {
        "writes": len(lags),
        "p50_ms": lags[len(lags) // 2],
        "p99_ms": lags[min(len(lags) - 1, int(len(lags) * 0.99))],
        "max_ms": lags[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--calls", type=int, default=300, help="IndexFaces and AssociateFaces calls per round"
    )
    parser.add_argument("--faces", type=int, default=10_000, help="faces in the searched collection")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--writes", type=int, default=200, help="writes timed for visibility")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    server = TempPostgres.start()
    results: dict[str, dict[str, list[float]]] = {"sqlite": {}, "postgresql": {}}
    try:
        for round_number in range(args.rounds):
            for backend in ("sqlite", "postgresql"):
                url = server.new_database() if backend == "postgresql" else None
                fp = open_pipe(url, Path(tempfile.mkdtemp(prefix=f"bench-{backend}-")))
                rng = np.random.default_rng(round_number)
                figures = {
                    "index_faces_calls_per_s": index_calls(fp, rng, args.calls),
                    "associate_faces_calls_per_s": associate_calls(fp, rng, args.calls),
                    f"search_faces_p50_ms_{args.faces}_faces": search_latency(fp, args.faces, args.queries),
                }
                fp.close()
                for key, value in figures.items():
                    results[backend].setdefault(key, []).append(value)
                print(backend, round_number, {k: round(v, 2) for k, v in figures.items()}, file=sys.stderr)
        vis = visibility(server.new_database(), args.writes)
    finally:
        server.close()
    report = {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "rounds": args.rounds,
        "medians": {b: {k: statistics.median(v) for k, v in figs.items()} for b, figs in results.items()},
        "ranges": {b: {k: [min(v), max(v)] for k, v in figs.items()} for b, figs in results.items()},
        "write_to_listener_applied_ms": vis,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
