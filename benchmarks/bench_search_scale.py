"""SearchFaces at scale: latency, above-threshold recall, memory and build time of the collection index.

For each size, a synthetic collection of face-shaped vectors (pipeline.bench.synthetic: identities of
1-6 faces around a shared mean direction) is indexed the way the store indexes it
(pipeline.store.index.build_collection_index), and the same queries are searched one at a time
through IndexSet.search, as SearchFaces runs them (k = MaxFaces 100, FaceMatchThreshold 80):

- ``quantized``: the store's index above its ANN threshold (32-byte PQ fast scan, measured candidate
  count, exact re-ranking);
- ``quantized-64B``: the previous release's index (64-byte codes, 1,000 candidates), as a peer
  (``--before-sizes``);
- ``exact``: the exact index (IndexFlatIP range search), the peer every result is checked against
  (``--exact-sizes``; at most ``--exact-queries`` queries).

Each index is searched with FAISS's AVX2 kernels and with its AVX-512 kernels, switching
faiss.SIMDConfig between them query by query, so both see the same machine state. This faiss
(1.15, one library with runtime dispatch) ignores FAISS_OPT_LEVEL; the level is set through
faiss.SIMDConfig (the FAISS_SIMD_LEVEL variable does the same at start). The CPU's clock and memory
system stay this machine's, so AVX2 figures on an AVX-512 CPU are an optimistic proxy for an
AVX2-only one.

Queries: 90% are fresh faces of identities in the collection (genuine), 10% faces of identities
held out of it (strangers). Recall counts, over all queries, every stored vector at or above the
threshold cosine (the best 100 per query where more), found by brute force.

Latency is wall time and the thread's CPU time per query (the CPU time does not count time spent
waiting for a core, which matters on a shared machine). Memory per face: the index's codes, float
vectors and ids. Build: training, adding and measuring the candidate count.

    .venv/bin/python benchmarks/bench_search_scale.py --sizes 100000,1000000,2000000,4000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.bench.machine import cpu_flags, cpu_model, flop_per_cycle
from pipeline.bench.synthetic import face_cloud
from pipeline.bench.vectors import match_cosine
from pipeline.store.index import (
    BUILD_THREADS,
    PQ_CANDIDATES,
    CollectionIndex,
    IndexSet,
    build_collection_index,
    faiss,
    training_sample,
    tune_candidates,
)

K = 100
LEVELS = ("AVX2", "AVX512_VPOPCNT")
HELD_OUT_EVERY = 10
"""Identities whose number is a multiple of this are kept out of the collection (the strangers)."""


def microarchitecture() -> str:
    """The CPU's microarchitecture as pipeline.bench.machine names it (e.g. "AMD Zen 4")."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
        family, model = int(fields.get("cpu family", "0")), int(fields.get("model", "0"))
    except (OSError, ValueError):
        return "unknown"
    _, reason = flop_per_cycle(fields.get("vendor_id", ""), family, model, set(cpu_flags()))
    return reason.split(":")[0] + (", AVX-512" if "avx512f" in cpu_flags() else ", no AVX-512")


def collection(n: int, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` stored vectors, the queries, and which queries are strangers."""
    cloud = face_cloud(int(n * 1.02 * HELD_OUT_EVERY / (HELD_OUT_EVERY - 1)) + 64, queries, seed=seed)
    held = cloud.identity % HELD_OUT_EVERY == 0
    stored = np.ascontiguousarray(cloud.vectors[~held][:n])
    return stored, cloud.queries, cloud.query_identity % HELD_OUT_EVERY == 0


def ground_truth(vectors: np.ndarray, queries: np.ndarray, cosine: float) -> list[set[int]]:
    """Per query, the positions of the stored vectors at or above ``cosine`` (the best K if more)."""
    out: list[set[int]] = []
    faiss.omp_set_num_threads(2)
    for start in range(0, len(queries), 32):
        sims = queries[start : start + 32] @ vectors.T
        for row in sims:
            hits = np.flatnonzero(row >= cosine)
            if hits.size > K:
                hits = hits[np.argsort(-row[hits], kind="stable")[:K]]
            out.append(set(hits.tolist()))
    faiss.omp_set_num_threads(1)
    return out


def memory_bytes(idx: CollectionIndex) -> int:
    """Bytes the index holds: codes, float vectors and ids."""
    ids = idx.live_count * 8
    if idx.kind == "flat":
        return ids + idx.live_count * idx.dim * 4
    refine = faiss.downcast_index(idx.index.index)
    codes = int(faiss.downcast_index(refine.base_index).codes.size())
    return ids + codes + int(faiss.downcast_index(refine.refine_index).codes.size())


def old_quantized(labels: np.ndarray, vectors: np.ndarray) -> CollectionIndex:
    """The previous release's index: 64-byte codes (one 4-bit sub-quantizer per dimension), 1,000 candidates."""
    dim = vectors.shape[1]
    inner = faiss.IndexRefineFlat(faiss.IndexPQFastScan(dim, dim, 4, faiss.METRIC_INNER_PRODUCT))
    faiss.omp_set_num_threads(1)
    inner.train(training_sample(vectors))
    index = faiss.IndexIDMap(inner)
    index.add_with_ids(vectors, labels)
    return CollectionIndex(0, dim, "pq", index, 0, candidates=PQ_CANDIDATES, tuned_faces=0)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 1000.0


def measure_size(n: int, args: argparse.Namespace, cosine: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    vectors, queries, stranger = collection(n, args.queries, args.seed)
    labels = np.arange(10_000, 10_000 + n, dtype=np.int64)
    generated = time.perf_counter() - t0
    truth = ground_truth(vectors, queries, cosine)
    indexes: dict[str, tuple[CollectionIndex, float, int]] = {}
    start = time.perf_counter()
    own = build_collection_index(1, vectors.shape[1], "pq", labels, vectors, 0)
    indexes["quantized"] = (own, time.perf_counter() - start, len(queries))
    start = time.perf_counter()
    faiss.omp_set_num_threads(BUILD_THREADS)
    tune_candidates(own.index, vectors, labels)  # again, to time it alone
    faiss.omp_set_num_threads(1)
    tune_s = time.perf_counter() - start
    if n in args.before_sizes:
        start = time.perf_counter()
        indexes["quantized-64B"] = (old_quantized(labels, vectors), time.perf_counter() - start, len(queries))
    if n in args.exact_sizes:
        start = time.perf_counter()
        flat = build_collection_index(2, vectors.shape[1], "flat", labels, vectors, 0)
        indexes["exact"] = (flat, time.perf_counter() - start, min(len(queries), args.exact_queries))
    del vectors
    searcher = IndexSet(None)
    faiss.omp_set_num_threads(1)
    wall: dict[tuple[str, str], list[float]] = {(name, level): [] for name in indexes for level in LEVELS}
    cpu: dict[tuple[str, str], list[float]] = {key: [] for key in wall}
    found: dict[tuple[str, str], list[int]] = {key: [] for key in wall}
    for qi, query in enumerate(queries):
        for name, (idx, _, limit) in indexes.items():
            if qi >= limit:
                continue
            for level in LEVELS:
                faiss.SIMDConfig.set_level(faiss.to_simd_level(level))
                w, c = time.perf_counter(), time.thread_time()
                hits = searcher.search(idx, query, K, cosine)
                cpu[(name, level)].append(time.thread_time() - c)
                wall[(name, level)].append(time.perf_counter() - w)
                found[(name, level)].append(len({label - 10_000 for label, _ in hits} & truth[qi]))
    faiss.SIMDConfig.set_level(faiss.SIMDConfig.auto_detect_simd_level())
    matches = [len(t) for t in truth]
    rows = []
    for (name, level), seconds in wall.items():
        idx, build_s, limit = indexes[name]
        total = sum(matches[:limit])
        genuine = [i for i in range(limit) if not stranger[i]]
        strangers = [i for i in range(limit) if stranger[i]]

        def share(picked: list[int], name: str = name, level: str = level) -> float | None:
            want = sum(matches[i] for i in picked)
            return None if want == 0 else sum(found[(name, level)][i] for i in picked) / want

        rows.append(
            {
                "index": name,
                "simd": level,
                "queries": limit,
                "p50_ms": percentile(seconds, 50),
                "p99_ms": percentile(seconds, 99),
                "cpu_p50_ms": percentile(cpu[(name, level)], 50),
                "cpu_p99_ms": percentile(cpu[(name, level)], 99),
                "recall_above_threshold": sum(found[(name, level)]) / total if total else None,
                "recall_genuine": share(genuine),
                "recall_strangers": share(strangers),
                "matches": total,
                "build_s": build_s,
                "bytes_per_face": memory_bytes(idx) / n,
                "candidates": idx.candidates if idx.kind == "pq" else None,
            }
        )
    for idx, _, _ in indexes.values():
        idx.index.reset()
    return {
        "faces": n,
        "generate_s": generated,
        "tune_candidates_s": tune_s,
        "queries": len(queries),
        "stranger_queries": int(stranger.sum()),
        "matches_per_genuine_query": float(
            np.mean([m for m, s in zip(matches, stranger, strict=True) if not s])
        ),
        "matches_per_stranger_query": float(np.mean([m for m, s in zip(matches, stranger, strict=True) if s]))
        if stranger.any()
        else None,
        "max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Search at scale, {result['date']}",
        "",
        f"CPU: {result['cpu']}, {result['microarchitecture']} ({result['cores']} cores, shared with other work; load average at start "
        f"{result['load_average']}). faiss {result['faiss']}; SIMD levels switched per query through "
        "faiss.SIMDConfig (FAISS_OPT_LEVEL has no effect on this faiss). AVX2 figures here run AVX2 "
        "kernels on Zen 4's clock and memory system: an optimistic proxy for an AVX2-only CPU.",
        "",
        f"Threshold: FaceMatchThreshold 80 = cosine {result['cosine']:.4f}; k = {K}; one thread per query.",
        f"Command: `{result['command']}`",
        "",
        "| faces | index | SIMD | p50 ms | p99 ms | CPU p50 ms | CPU p99 ms | recall | genuine | strangers "
        "| matches | candidates | bytes/face | build s |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.2f}%"

    for size in result["sizes"]:
        for r in size["rows"]:
            lines.append(
                f"| {size['faces']:,} | {r['index']} | {r['simd']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                f"| {r['cpu_p50_ms']:.2f} | {r['cpu_p99_ms']:.2f} | {pct(r['recall_above_threshold'])} "
                f"| {pct(r['recall_genuine'])} | {pct(r['recall_strangers'])} | {r['matches']:,} "
                f"| {r['candidates'] or '-'} | {r['bytes_per_face']:.0f} | {r['build_s']:.1f} |"
            )
    lines.append("")
    for size in result["sizes"]:
        lines.append(
            f"- {size['faces']:,} faces: {size['queries']} queries ({size['stranger_queries']} strangers); "
            f"matches above the threshold per genuine query {size['matches_per_genuine_query']:.1f}, per "
            f"stranger {size['matches_per_stranger_query'] or 0:.1f}; measuring the candidate count took "
            f"{size['tune_candidates_s']:.1f} s of the build; process peak RSS {size['max_rss_gib']:.1f} GiB."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000,2000000,4000000")
    parser.add_argument(
        "--before-sizes", default="100000,1000000", help="sizes that also measure the previous index"
    )
    parser.add_argument("--exact-sizes", default="100000,1000000,2000000,4000000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--exact-queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="folder for summary.json and summary.md")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    args.before_sizes = {int(s) for s in args.before_sizes.split(",") if s}
    args.exact_sizes = {int(s) for s in args.exact_sizes.split(",") if s}
    cosine = match_cosine(80.0)
    result: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "cpu": cpu_model(),
        "microarchitecture": microarchitecture(),
        "cores": len(os.sched_getaffinity(0)),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "faiss": faiss.__version__,
        "faiss_compile_options": faiss.get_compile_options(),
        "faiss_default_simd": faiss.SIMDConfig.get_level_name(),
        "cosine": cosine,
        "command": " ".join(["python", *sys.argv]),
        "sizes": [],
    }
    for n in sizes:
        size = measure_size(n, args, cosine)
        result["sizes"].append(size)
        for r in size["rows"]:
            print(
                f"{n:>10,} {r['index']:14s} {r['simd']:15s} p50 {r['p50_ms']:7.2f} cpu {r['cpu_p50_ms']:7.2f} "
                f"p99 {r['p99_ms']:7.2f} ms recall {r['recall_above_threshold']:.4f} cand {r['candidates']} "
                f"{r['bytes_per_face']:.0f} B/face build {r['build_s']:.1f}s",
                flush=True,
            )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "summary.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
