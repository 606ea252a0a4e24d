"""What erasure costs: DeleteFaces, DeleteUser and DeleteCollection time and the database file size,
for two checkouts side by side (interleaved runs in child processes, same interpreter).

    python benchmarks/bench_store_erasure.py --old /path/to/old/checkout [--faces 20000] [--rounds 3]

Each child fills a fresh store with two collections of ``--faces`` synthetic 128-d faces (durable
commits of 5,000), loads the index with a search, then times 30 DeleteFaces of one face each,
10 DeleteUser of a user with 5 faces, and one DeleteCollection of one of the two collections, and
reports the database file before and after it (WAL checkpointed first on both sides, so the file
holds everything). Medians over the rounds; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

CHILD = "--child"
DIM = 128


class _VectorsOnlyEngine:
    """What CreateCollection and the searches need of an engine (no images here)."""

    model_version = "bench"
    embedding_dim = DIM

    def similarity(self, cosine: float) -> float:
        return float(min(100.0, max(0.0, 100.0 * cosine)))

    def cosine_at(self, similarity: float) -> float:
        return similarity / 100.0


def child(faces: int) -> dict[str, Any]:
    """One measurement with whatever ``pipeline`` is on sys.path."""
    import sqlite3

    import numpy as np

    from pipeline.config import Settings
    from pipeline.service import FacePipe
    from pipeline.store import NewFace

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="facepipe-erasure-") as tmp:
        home = Path(tmp) / "home"
        settings = Settings(data_dir=home, cache_dir=Path(tmp) / "cache")
        fp = FacePipe(settings, engine=_VectorsOnlyEngine())  # type: ignore[arg-type]
        ids: dict[str, list[str]] = {}
        for name in ("keep", "gone"):
            fp.call("CreateCollection", {"CollectionId": name})
            ids[name] = []
            for first in range(0, faces, 5000):
                with fp.store.write() as tx:
                    coll = tx.collection(name)
                    for i in range(first, min(first + 5000, faces)):
                        v = rng.normal(size=DIM).astype(np.float32)
                        face_id = str(uuid.UUID(int=(1 + ("keep", "gone").index(name)) << 64 | i))
                        tx.insert_face(
                            coll,
                            NewFace(
                                face_id,
                                f"img-{i}",
                                None,
                                f"k{i}",
                                0.1,
                                0.1,
                                0.3,
                                0.3,
                                99.0,
                                v / np.linalg.norm(v),
                            ),
                        )
                        ids[name].append(face_id)
        fp.call("SearchFaces", {"CollectionId": "keep", "FaceId": ids["keep"][-1]})
        delete_ms = []
        for face_id in ids["keep"][:30]:
            start = time.perf_counter()
            fp.call("DeleteFaces", {"CollectionId": "keep", "FaceIds": [face_id]})
            delete_ms.append((time.perf_counter() - start) * 1000)
        user_ms = []
        for u in range(10):
            user = f"user-{u}"
            mine = ids["keep"][100 + 5 * u : 105 + 5 * u]
            fp.call("CreateUser", {"CollectionId": "keep", "UserId": user})
            fp.call(
                "AssociateFaces",
                {"CollectionId": "keep", "UserId": user, "FaceIds": mine, "UserMatchThreshold": 0},
            )
            start = time.perf_counter()
            fp.call("DeleteUser", {"CollectionId": "keep", "UserId": user})
            user_ms.append((time.perf_counter() - start) * 1000)
        db_file = home / "facepipe.sqlite3"
        conn = sqlite3.connect(db_file)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        before = db_file.stat().st_size
        start = time.perf_counter()
        fp.call("DeleteCollection", {"CollectionId": "gone"})
        collection_ms = (time.perf_counter() - start) * 1000
        fp.close()
        conn = sqlite3.connect(db_file)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        after = db_file.stat().st_size
    return {
        "delete_faces_ms": statistics.median(delete_ms),
        "delete_user_ms": statistics.median(user_ms),
        "delete_collection_ms": collection_ms,
        "db_bytes_before_delete_collection": before,
        "db_bytes_after_delete_collection": after,
    }


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == CHILD:
        print(json.dumps(child(int(sys.argv[2]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--old", type=Path, required=True, help="checkout to compare with (its pipeline/ is used)"
    )
    parser.add_argument("--faces", type=int, default=20_000, help="faces per collection (default 20000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per side (default 3)")
    args = parser.parse_args()
    sides = {"old": str(args.old.resolve()), "new": str(Path(__file__).resolve().parents[1])}
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for _ in range(args.rounds):
        for side, root in sides.items():
            env = dict(os.environ, PYTHONPATH=root)
            out = subprocess.run(
                [sys.executable, __file__, CHILD, str(args.faces)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
    summary = {
        side: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for side, results in runs.items()
    }
    print(
        json.dumps({"faces_per_collection": args.faces, "rounds": args.rounds, "median": summary}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
