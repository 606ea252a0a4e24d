"""The PostgreSQL store against the SQLite store at 100k and 1M faces, in the same run: IndexFaces
store writes/s, SearchFaces latency, AssociateFaces calls/s and the time a process needs to start
searching a large collection (with and without a local index snapshot on PostgreSQL).

    python benchmarks/bench_postgres_scale.py [--sizes 100000 1000000] [--out DIR]

A throwaway PostgreSQL server is started on a loopback port (tests/support/pgserver.py: fsync on,
synchronous_commit on, shared_buffers 32 MB), so both stores make durable commits on the same disk.
For each size, SQLite then PostgreSQL, each on a fresh store:

1. load: ``size`` synthetic 128-d unit vectors (the default engine's dimension) as faces of one
   collection in one transaction: COPY on PostgreSQL, executemany on SQLite (the benchmark's bulk
   path; the change log is not written, the first search builds the index from the faces table).
2. start: a new store object (as a server process that starts) until its first search has
   answered: the index is built from the database (exact up to 100k faces, quantized above). On
   PostgreSQL the index is then saved as a snapshot (``PostgresStore.save_snapshots``) and a third
   store object starts from it. On SQLite a quantized index is saved in the data directory after
   its build, so its second start loads that file; a flat one is built again.
3. IndexFaces: ``--writes`` single-face store transactions on top of the large collection (what
   IndexFaces writes: the collection's row, the de-duplication lookup, the face and its log row),
   through pipeline.service's index_analyzed_images with a fake engine: writes/s.
4. SearchFaces: ``--searches`` FacePipe.call("SearchFaces") by the FaceId of a random face,
   MaxFaces 10, FaceMatchThreshold 0 (every call reads 10 matched rows): latency p50/p99, ms.
5. AssociateFaces: ``--associations`` FacePipe.call("AssociateFaces") of one loaded face each,
   UserMatchThreshold 0, users of at most 90 faces: calls/s.

Writes the JSON and a markdown table into ``--out`` (default
benchmarks/results/<date>-postgres-scale/), the CPU and the load average named.
"""

from __future__ import annotations

import argparse
import datetime
import json
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

from pipeline.bench.machine import cpu_flags, cpu_model  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.service import FacePipe  # noqa: E402
from pipeline.store.db import vector_to_blob  # noqa: E402
from pipeline.store.postgres import PostgresStore  # noqa: E402
from tests.support.pgserver import TempPostgres  # noqa: E402
from tests.support.synthetic_faces import LinearEngine, index_vectors  # noqa: E402

DIM = 128
COLLECTION = "big"
LOAD_CHUNK = 50_000
"""Faces generated and written per chunk of the bulk load."""
FACE_COLUMNS = (
    "collection_id, face_id, image_id, external_image_id, dedup_key, box_left, box_top, box_width,"
    " box_height, confidence, created_at, vector"
)


class BenchEngine(LinearEngine):
    """LinearEngine at 128 dimensions (the default model's)."""

    embedding_dim = DIM


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def face_uuid(i: int) -> str:
    """A FaceId-shaped id for synthetic face ``i``."""
    return f"00000000-0000-4000-8000-{i:012d}"


def rows(collection_id: int, start: int, vectors: np.ndarray) -> list[tuple[object, ...]]:
    now = time.time()
    return [
        (collection_id, face_uuid(i), "img", None, f"k{i}", 0.0, 0.0, 1.0, 1.0, 99.0, now, vector_to_blob(v))
        for i, v in enumerate(vectors, start)
    ]


def bulk_load(fp: FacePipe, backend: str, size: int) -> float:
    """Create the collection and load ``size`` faces in one transaction; returns seconds."""
    fp.call("CreateCollection", {"CollectionId": COLLECTION})
    rng = np.random.default_rng(size)
    start = time.perf_counter()
    with fp.store.write() as tx:
        coll = tx.collection(COLLECTION)
        conn: Any = tx.conn  # type: ignore[attr-defined]  # the backend's own connection
        for first in range(0, size, LOAD_CHUNK):
            chunk = rows(coll.id, first, unit_rows(rng, min(LOAD_CHUNK, size - first)))
            if backend == "postgresql":
                with conn.cursor().copy(f"COPY faces ({FACE_COLUMNS}) FROM STDIN") as copy:
                    for row in chunk:
                        copy.write_row(row)
            else:
                marks = ", ".join("?" * 12)
                conn.executemany(f"INSERT INTO faces ({FACE_COLUMNS}) VALUES ({marks})", chunk)
        param = "%s" if backend == "postgresql" else "?"
        conn.execute(f"UPDATE collections SET face_count = {param} WHERE id = {param}", (size, coll.id))
    return time.perf_counter() - start


def cpu_label() -> str:
    """The CPU's name, with "Zen 4" added for an AMD family-25 part with AVX-512 (/proc/cpuinfo
    names these virtual CPUs only "AMD EPYC"; Zen 3, also family 25, has no AVX-512)."""
    name = cpu_model()
    info = Path("/proc/cpuinfo").read_text(errors="replace") if Path("/proc/cpuinfo").is_file() else ""
    family = next(
        (line.split(":")[1].strip() for line in info.splitlines() if line.startswith("cpu family")), ""
    )
    if "AMD" in name and family == "25" and "avx512f" in cpu_flags():
        return f"{name} (Zen 4, AVX-512)"
    return name


def open_pipe(url: str | None, root: Path) -> FacePipe:
    """A FacePipe on a new store object (a server process that starts): SQLite in ``root``, or the
    PostgreSQL ``url`` with its local snapshots in root/snapshots."""
    return FacePipe(Settings(data_dir=root, cache_dir=root / "cache", store=url), engine=BenchEngine())


def first_search_s(fp: FacePipe, size: int) -> float:
    """Seconds from now until a SearchFaces has answered (the index built or loaded)."""
    start = time.perf_counter()
    fp.call("SearchFaces", {"CollectionId": COLLECTION, "FaceId": face_uuid(size // 2), "MaxFaces": 1})
    return time.perf_counter() - start


def index_writes(fp: FacePipe, writes: int) -> float:
    vectors = list(unit_rows(np.random.default_rng(99), writes))
    start = time.perf_counter()
    for i, vector in enumerate(vectors):
        index_vectors(fp, COLLECTION, [vector], prefix=f"w{i}-")
    return writes / (time.perf_counter() - start)


def search_latencies(fp: FacePipe, size: int, searches: int) -> dict[str, float]:
    rng = np.random.default_rng(7)
    times = []
    for i in rng.integers(0, size, searches):
        start = time.perf_counter()
        out = fp.call(
            "SearchFaces",
            {
                "CollectionId": COLLECTION,
                "FaceId": face_uuid(int(i)),
                "MaxFaces": 10,
                "FaceMatchThreshold": 0,
            },
        )
        times.append(time.perf_counter() - start)
        assert len(out["FaceMatches"]) == 10
    times.sort()
    return {
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))] * 1000,
    }


def associations(fp: FacePipe, size: int, calls: int) -> float:
    users = [f"u{i}" for i in range(-(-calls // 90))]
    for user in users:
        fp.call("CreateUser", {"CollectionId": COLLECTION, "UserId": user})
    start = time.perf_counter()
    for i in range(calls):
        fp.call(
            "AssociateFaces",
            {
                "CollectionId": COLLECTION,
                "UserId": users[i // 90],
                "FaceIds": [face_uuid(size - 1 - i)],
                "UserMatchThreshold": 0,
            },
        )
    return calls / (time.perf_counter() - start)


def run_backend(backend: str, size: int, server: TempPostgres, args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"bench-scale-{backend}-"))
    url = server.new_database() if backend == "postgresql" else None
    figures: dict[str, Any] = {}
    loader = open_pipe(url, root)
    figures["load_s"] = bulk_load(loader, backend, size)
    loader.close()
    fp = open_pipe(url, root)
    figures["start_build_s"] = first_search_s(fp, size)
    with fp.store.read() as tx:
        coll = tx.collection(COLLECTION)
    figures["index_kind"] = fp.store.index_of(coll).kind  # type: ignore[attr-defined]
    if isinstance(fp.store, PostgresStore):
        start = time.perf_counter()
        fp.store.save_snapshots()
        figures["snapshot_save_s"] = time.perf_counter() - start
        files = list((root / "snapshots").glob("*/collection-*.faiss"))
        figures["snapshot_bytes"] = sum(f.stat().st_size for f in files)
    fp.close()
    start = time.perf_counter()
    again = open_pipe(url, root)
    again.store  # noqa: B018  # opened now: PostgreSQL loads its snapshots here
    figures["start_again_s"] = (time.perf_counter() - start) + first_search_s(again, size)
    if isinstance(again.store, PostgresStore):
        figures["start_again_from_snapshot"] = again.store.snapshots_loaded == 1
    figures["index_faces_writes_per_s"] = index_writes(again, args.writes)
    figures["search_faces"] = search_latencies(again, size, args.searches)
    figures["associate_faces_calls_per_s"] = associations(again, size, args.associations)
    again.close()
    return figures


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# PostgreSQL against SQLite at scale ({report['date']})",
        "",
        f"CPU: {report['cpu']}, {report['cores']} cores, shared (load average at start "
        f"{report['load_average_start']}, at end {report['load_average_end']}). "
        f"Command: `{report['command']}`.",
        "",
        "| faces | backend | load (s) | start, index built (s) | start again (s) | IndexFaces writes/s |"
        " SearchFaces p50 / p99 (ms) | AssociateFaces calls/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size, backends in report["results"].items():
        for backend, f in backends.items():
            again = f"{f['start_again_s']:.2f}" + (
                " (snapshot)" if f.get("start_again_from_snapshot") else f" ({f['index_kind']})"
            )
            lines.append(
                f"| {int(size):,} | {backend} | {f['load_s']:.1f} | {f['start_build_s']:.2f} ({f['index_kind']}) |"
                f" {again} | {f['index_faces_writes_per_s']:.0f} | {f['search_faces']['p50_ms']:.2f} /"
                f" {f['search_faces']['p99_ms']:.2f} | {f['associate_faces_calls_per_s']:.0f} |"
            )
    lines += [
        "",
        "Start: a new store object until its first SearchFaces answered. PostgreSQL's start again",
        "loads the local snapshot and replays the change log after it; SQLite's loads its saved",
        "quantized index (1M) or builds the exact one again (100k). Snapshot sizes (bytes): "
        + ", ".join(
            f"{int(size):,}: {b['postgresql'].get('snapshot_bytes', 0):,}"
            for size, b in report["results"].items()
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--writes", type=int, default=300, help="IndexFaces store writes per backend")
    parser.add_argument("--searches", type=int, default=300, help="SearchFaces calls per backend")
    parser.add_argument("--associations", type=int, default=270, help="AssociateFaces calls per backend")
    parser.add_argument("--out", type=Path, help="folder for the JSON and markdown")
    args = parser.parse_args()
    today = datetime.date.today().isoformat()
    out = args.out or Path(__file__).resolve().parent / "results" / f"{today}-postgres-scale"
    report: dict[str, Any] = {
        "date": today,
        "cpu": cpu_label(),
        "cores": len(os.sched_getaffinity(0)),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "command": "python " + " ".join(["benchmarks/bench_postgres_scale.py", *sys.argv[1:]]),
        "results": {},
    }
    server = TempPostgres.start()
    started = time.perf_counter()
    try:
        for size in args.sizes:
            report["results"][str(size)] = {}
            for backend in ("sqlite", "postgresql"):
                figures = run_backend(backend, size, server, args)
                report["results"][str(size)][backend] = figures
                print(size, backend, json.dumps(figures), file=sys.stderr, flush=True)
    finally:
        server.close()
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "README.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
