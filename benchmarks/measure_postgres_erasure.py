"""Where a deleted face's vector bytes remain in a PostgreSQL cluster after facepipe's DeleteFaces.

    python benchmarks/measure_postgres_erasure.py [--faces 300] [--deleted 46]

Starts a throwaway server (tests/support/pgserver.py), stores ``--faces`` synthetic 128-d faces,
deletes ``--deleted`` of them spread over the table (every 7th, plus the last ones) and scans the
raw files for the first 64 bytes of each deleted vector: the faces table's heap file and the WAL
segments, after a CHECKPOINT so the pages are on disk. States: before the deletion, right after
its commit, after the VACUUM the store runs after every deleting write (so "after_facepipe_vacuum"
is what a DeleteFaces leaves), and after as many new faces again were written (free space reused).
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support, when run as a script

from pipeline.store import NewFace  # noqa: E402
from pipeline.store.postgres import PostgresStore  # noqa: E402
from tests.support.pgserver import TempPostgres  # noqa: E402

DIM = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=300)
    parser.add_argument("--deleted", type=int, default=46)
    args = parser.parse_args()
    server = TempPostgres.start()
    report: dict[str, object] = {"faces": args.faces}
    try:
        url = server.new_database()
        store = PostgresStore(url, listen=False)
        rng = np.random.default_rng(0)
        vectors = rng.normal(size=(2 * args.faces, DIM)).astype(np.float32)
        with store.write() as tx:
            coll = tx.insert_collection("c", "arn:c", "1", DIM, {})
            labels = [
                tx.insert_face(coll, NewFace(f"f{i}", "i", None, "k", 0, 0, 1, 1, 99.0, v))
                for i, v in enumerate(vectors[: args.faces])
            ]
        gone = sorted(set(range(0, args.faces, 7)) | {args.faces - 1, args.faces - 2})[: args.deleted]
        report["deleted"] = len(gone)
        needles = [vectors[i].astype("<f4").tobytes()[:64] for i in gone]

        def scan() -> dict[str, int]:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CHECKPOINT")
                relation = conn.execute("SELECT pg_relation_filepath('faces')").fetchone()
            assert relation is not None
            heap = b"".join(p.read_bytes() for p in server.data.glob(relation[0] + "*"))
            wal = b"".join(p.read_bytes() for p in (server.data / "pg_wal").glob("0*"))
            return {
                "in_heap_file": sum(n in heap for n in needles),
                "in_wal_segments": sum(n in wal for n in needles),
            }

        report["before_delete"] = scan()
        with store.database.write() as tx:  # the deletion alone, before the store's VACUUM
            tx.delete_faces(coll, [labels[i] for i in gone])
        report["deleted_before_vacuum"] = scan()
        store.database.erase_log()  # what the store runs after every deleting write: VACUUM
        report["after_facepipe_vacuum"] = scan()
        with store.write() as tx:
            for i, v in enumerate(vectors[args.faces :], args.faces):
                tx.insert_face(coll, NewFace(f"f{i}", "i", None, "k", 0, 0, 1, 1, 99.0, v))
        report["after_as_many_new_faces"] = scan()
        store.close()
    finally:
        server.close()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
