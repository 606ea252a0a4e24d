"""Metadata requests/s with 1, 2 and 3 `facepipe serve` processes on one PostgreSQL database.

    python benchmarks/bench_postgres_servers.py [--requests 1500] [--clients 6] [--out FILE]

A throwaway PostgreSQL server (tests/support/pgserver.py) holds one collection of 500 synthetic
128-d faces and a user with 20 of them, written through the store directly. For each server count,
that many `facepipe serve --no-auth --store ...` processes start on it; ``--clients`` client
threads of this process (the lean JSON 1.1 client of ``facepipe bench``'s server suite, one
persistent connection each) are spread evenly over the servers, and ListFaces (MaxResults 20),
DescribeCollection and SearchUsers (by UserId) each run ``--requests`` calls. Figures: requests/s,
p50/p99 latency, and CPU ms per request of the serving processes together (clients and PostgreSQL
excluded). On a 2-core machine the servers, the clients and PostgreSQL share the cores, so
requests/s cannot grow with servers here; CPU per request does not depend on that. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support, when run as a script

from pipeline.bench.suite_server import (  # noqa: E402
    http_call,
    process_cpu_seconds,
    run_clients,
    stop_server,
)
from pipeline.store import NewFace  # noqa: E402
from pipeline.store.postgres import PostgresStore  # noqa: E402
from pipeline.vision.packs import read_manifest  # noqa: E402
from tests.support.pgserver import TempPostgres  # noqa: E402
from tests.support.server import free_port  # noqa: E402

DIM = 128
MODEL_VERSION = str(read_manifest("default")["model_version"])
"""The servers' engine scores only collections of its own model."""
OPERATIONS: dict[str, dict[str, Any]] = {
    "ListFaces": {"CollectionId": "m", "MaxResults": 20},
    "DescribeCollection": {"CollectionId": "m"},
    "SearchUsers": {"CollectionId": "m", "UserId": "u", "MaxUsers": 5},
}


def fill(url: str) -> None:
    store = PostgresStore(url, listen=False)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with store.write() as tx:
        coll = tx.insert_collection(
            "m", "arn:aws:rekognition:local:000000000000:collection/m", MODEL_VERSION, DIM, {}
        )
        labels = [
            tx.insert_face(
                coll, NewFace(f"00000000-0000-4000-8000-{i:012d}", "img", None, f"k{i}", 0, 0, 1, 1, 99.0, v)
            )
            for i, v in enumerate(vectors)
        ]
        tx.insert_user(coll, "u")
        tx.set_face_user(coll, labels[:20], "u")
        tx.refresh_user(coll, "u")
    store.close()


def start(url: str, root: Path) -> tuple[Any, str]:
    import socket
    import subprocess

    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    log = (root / f"server-{port}.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("facepipe")), "serve", "--host", "127.0.0.1", "--port", str(port),
         "--no-auth", "--data-dir", str(root), "--store", url],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((root / f"server-{port}.log").read_text()[-2000:])
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not listen")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    pg = TempPostgres.start()
    report: dict[str, Any] = {"cores": len(os.sched_getaffinity(0)), "clients": args.clients, "runs": {}}
    try:
        url = pg.new_database()
        fill(url)
        for count in (1, 2, 3):
            servers = [start(url, Path(tempfile.mkdtemp(prefix="bench-srv-"))) for _ in range(count)]
            try:
                urls = [u for _, u in servers]
                pids = [p.pid for p, _ in servers]
                slot = iter(range(10**9))

                def make_call(urls: list[str] = urls, slot: Any = slot) -> Any:
                    return http_call(urls[next(slot) % len(urls)], False)

                def cpu(pids: list[int] = pids) -> float | None:
                    values = [process_cpu_seconds(pid) for pid in pids]
                    return None if any(v is None for v in values) else sum(v for v in values if v is not None)

                figures = {}
                for operation, params in OPERATIONS.items():
                    run = run_clients(make_call, operation, params, args.clients, args.requests, cpu)
                    figures[operation] = {
                        "requests_per_s": round(run.requests_per_s, 1),
                        "p50_ms": round(run.latency_ms(50), 2),
                        "p99_ms": round(run.latency_ms(99), 2),
                        "server_cpu_ms_per_request": None
                        if run.cpu_ms_per_request is None
                        else round(run.cpu_ms_per_request, 3),
                    }
                report["runs"][f"{count} server{'s' if count > 1 else ''}"] = figures
                print(count, figures, file=sys.stderr)
            finally:
                for proc, _ in servers:
                    stop_server(proc)
    finally:
        pg.close()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
