"""Store benchmark: SearchFaces latency and recall, memory and disk per face, AssociateFaces calls/s.

    python benchmarks/bench_store.py --sizes 10000 100000 1000000 [--force-hnsw] [--out results.json]

Vectors are synthetic but shaped like faces: identities with 1-6 faces each, every face a unit
vector around its identity's direction with the spread of real embeddings (same-person cosines
mostly 0.45-0.85, strangers near 0). Recall is measured the way users feel it: the share of the
faces above FaceMatchThreshold (exact search) that the store's search returns, and recall@10
against exact top-10. AssociateFaces runs through FacePipe.call with durable commits.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Settings
from pipeline.service import FacePipe
from pipeline.service.faces import AnalyzedImage, index_analyzed_images
from pipeline.store import NewFace, Store
from pipeline.store.index import faiss
from pipeline.types import BoundingBox, DetectedFace, ImageQuality, Pose


def face_vectors(
    n: int, dim: int, rng: np.random.Generator, spread: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (n, dim) unit float32, identity of each row); identities have 1-6 faces."""
    sizes = rng.integers(1, 7, size=n)
    identity = np.repeat(np.arange(len(sizes)), sizes)[:n]
    centers = rng.normal(size=(int(identity.max()) + 1, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    noise = rng.normal(size=(n, dim)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    x = centers[identity] + spread * noise
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), identity


def fill_store(store: Store, vectors: np.ndarray, batch: int = 20_000) -> Any:
    with store.write() as tx:
        coll = tx.insert_collection("bench", "arn:bench", "bench", vectors.shape[1], {})
    for start in range(0, len(vectors), batch):
        with store.write() as tx:
            for i in range(start, min(start + batch, len(vectors))):
                tx.insert_face(coll, NewFace(f"face-{i}", "img", None, f"k{i}", 0, 0, 1, 1, 99.0, vectors[i]))
    with store.read() as tx:
        return tx.collection("bench")


def bench_search(
    size: int, dim: int, min_cosine: float, queries: int, force_hnsw: bool, seed: int
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    vectors, _ = face_vectors(size, dim, rng)
    with tempfile.TemporaryDirectory() as home:
        store = Store(Path(home), hnsw_threshold=0 if force_hnsw else Store.__init__.__defaults__[0])  # type: ignore[index]
        t0 = time.perf_counter()
        coll = fill_store(store, vectors)
        fill_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        index = store.index_of(coll)
        build_s = time.perf_counter() - t0
        picks = rng.choice(size, size=queries, replace=False)
        latencies, found, wanted, at10 = [], 0, 0, 0
        for i in picks:
            q = vectors[i]
            t0 = time.perf_counter()
            hits = store.search(coll, q, 100, min_cosine)
            latencies.append(time.perf_counter() - t0)
            scores = vectors @ q
            above = set((np.nonzero(scores >= min_cosine)[0] + 1).tolist())  # labels start at 1
            got = {label for label, _ in hits}
            wanted += min(len(above), 100)
            found += len(got & above)
            top10 = set((np.argsort(-scores)[:10] + 1).tolist())
            at10 += len({label for label, _ in store.search(coll, q, 10, -1.0)} & top10)
        index_bytes = len(faiss.serialize_index(index.index))
        store.close()
        db_bytes = sum(p.stat().st_size for p in Path(home).glob("facepipe.sqlite3*"))
    lat = np.array(latencies) * 1000
    return {
        "faces": size,
        "index": index.kind,
        "fill_s": round(fill_s, 2),
        "index_build_s": round(build_s, 2),
        "search_p50_ms": round(float(np.percentile(lat, 50)), 3),
        "search_p99_ms": round(float(np.percentile(lat, 99)), 3),
        "above_threshold_recall": round(found / max(wanted, 1), 4),
        "recall_at_10": round(at10 / (10 * queries), 4),
        "index_bytes_per_face": round(index_bytes / size, 1),
        "sqlite_bytes_per_face": round(db_bytes / size, 1),
    }


def _face(vector: np.ndarray) -> DetectedFace:
    return DetectedFace(
        BoundingBox(0.1, 0.1, 0.3, 0.3), (), Pose(0, 0, 0), ImageQuality(80, 80), 99.0, vector
    )


def bench_associate(calls: int, seed: int) -> dict[str, Any]:
    """AssociateFaces calls/s: one face per call onto users that already have faces."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as home:
        fp = FacePipe(Settings.from_env(data_dir=Path(home)))
        dim = fp.engine.embedding_dim
        vectors, identity = face_vectors(calls + 50, dim, rng, spread=0.5)
        fp.call("CreateCollection", {"CollectionId": "bench"})
        items = [AnalyzedImage(f"i{i}", 640, 480, [_face(v)]) for i, v in enumerate(vectors)]
        face_ids = [r["FaceRecords"][0]["Face"]["FaceId"] for r in index_analyzed_images(fp, "bench", items)]
        users = sorted(set(identity.tolist()))
        for u in users:
            fp.call("CreateUser", {"CollectionId": "bench", "UserId": f"u{u}"})
        t0 = time.perf_counter()
        for i in range(calls):
            fp.call(
                "AssociateFaces",
                {
                    "CollectionId": "bench",
                    "UserId": f"u{identity[i]}",
                    "FaceIds": [face_ids[i]],
                    "UserMatchThreshold": 0,
                },
            )
        elapsed = time.perf_counter() - t0
        fp.close()
    return {
        "associate_calls": calls,
        "associate_calls_per_s": round(calls / elapsed, 1),
        "synchronous": "FULL",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threshold", type=float, default=80.0, help="FaceMatchThreshold (0-100)")
    parser.add_argument(
        "--force-hnsw", action="store_true", help="HNSW at every size (default: exact up to 100k)"
    )
    parser.add_argument("--associate-calls", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    fp = FacePipe()
    min_cosine = float(fp.engine.cosine_at(args.threshold))
    results: dict[str, Any] = {"threshold": args.threshold, "min_cosine": round(min_cosine, 4), "search": []}
    for size in args.sizes:
        row = bench_search(size, args.dim, min_cosine, args.queries, args.force_hnsw, seed=size)
        print(json.dumps(row))
        results["search"].append(row)
    results["associate"] = bench_associate(args.associate_calls, seed=1)
    print(json.dumps(results["associate"]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
