"""Search suite: latency, recall and size of the collection indexes on synthetic face-shaped vectors.

For each collection size the vectors go into a real store (durable SQLite commits). Then the
same held-out queries are searched one at a time (as SearchFaces does) by:

- ``store``: the store's own search path (snapshot check, then the index the store picks at that
  size: exact up to its ANN threshold, the quantized scan above it);
- ``exact`` and ``ann``: the exact (flat) and the quantized (PQ scan + exact re-rank) index alone, both at every size (the one
  the store uses is the store's own index, the other is built the same way);
- ``faiss_flat``: a plain ``faiss.IndexFlatIP`` over the same vectors (the peer).

Latency percentiles are per query. Recall is measured against brute-force ground truth the way
users feel it, the share of the faces above FaceMatchThreshold 80 that the search returns, with
recall@10 beside it. Bytes per face: in memory, the serialized size of each index; on disk, the
store's SQLite files (vectors included) and its saved index file.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

from pipeline.bench.context import BenchContext
from pipeline.bench.report import Figure, SuiteResult, single
from pipeline.bench.stats import percentile, recall_at_k, speedups, spread, threshold_recall
from pipeline.bench.synthetic import face_cloud
from pipeline.bench.vectors import (
    Hits,
    bytes_per_face,
    data_dir_bytes,
    fill_store,
    index_memory_bytes,
    match_cosine,
    store_indexes,
)
from pipeline.store.index import DEFAULT_ANN_THRESHOLD

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

SEARCH_K = 100
"""Results asked per query for the threshold search (SearchFaces' MaxFaces)."""
RECALL_K = 10
INDEX_KIND_WORDS = {"flat": "exact", "pq": "quantized scan"}


def _ground_truth(
    vectors: F32, queries: F32, cosine: float, k: int, max_faces: int = SEARCH_K
) -> tuple[I64, F32, list[set[int]]]:
    """Exact top-k ids and scores (queries, k), and per query the ids an exact search with
    MaxFaces ``max_faces`` returns: the vectors at or above ``cosine``, the best ``max_faces`` of them
    when there are more (a search that may return 100 faces cannot be faulted for the 101st)."""
    top = np.empty((queries.shape[0], k), dtype=np.int64)
    top_scores = np.empty((queries.shape[0], k), dtype=np.float32)
    above: list[set[int]] = []
    for start in range(0, queries.shape[0], 64):
        sims = queries[start : start + 64] @ vectors.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(sims, part, axis=1).argsort(axis=1)[:, ::-1]
        top[start : start + 64] = np.take_along_axis(part, order, axis=1)
        top_scores[start : start + 64] = np.take_along_axis(sims, top[start : start + 64], axis=1)
        for row in sims:
            hits = np.nonzero(row >= cosine)[0]
            if hits.size > max_faces:
                hits = hits[np.argsort(-row[hits], kind="stable")[:max_faces]]
            above.append(set(hits.tolist()))
    return top, top_scores, above


def _one_by_one(search: Callable[[F32], Hits], queries: F32) -> tuple[list[float], list[Hits]]:
    """Search each query alone: seconds per query, and every query's hits."""
    seconds: list[float] = []
    hits: list[Hits] = []
    for q in queries:
        start = time.perf_counter()
        found = search(q)
        seconds.append(time.perf_counter() - start)
        hits.append(found)
    return seconds, hits


def _latency_figures(result: SuiteResult, name: str, label: str, n: int, runs: list[list[float]]) -> None:
    for q, tag in ((50, "p50"), (95, "p95"), (99, "p99")):
        per_run = [percentile(r, q) * 1000.0 for r in runs]
        result.add(
            Figure(
                f"{name}.{tag}_ms.{n}",
                f"{label}: search latency {tag}, {n:,} faces",
                "ms",
                "lower",
                spread(per_run),
                {"faces": n, "percentile": q, "k": SEARCH_K},
            )
        )


def _recall_figure(
    result: SuiteResult, name: str, label: str, n: int, recall: float | None, cosine: float, true_matches: int
) -> None:
    if recall is None:
        return
    result.add(
        Figure(
            f"{name}.recall_above_threshold.{n}",
            f"{label}: share of matches above Similarity 80 found (of the best {SEARCH_K}), {n:,} faces",
            "share",
            "higher",
            single(recall),
            {"faces": n, "cosine": round(cosine, 4), "true_matches": true_matches},
        )
    )


def _bytes_figure(
    result: SuiteResult, fid: str, label: str, n: int, total: int, parts: dict[str, int]
) -> None:
    result.add(
        Figure(
            fid,
            label,
            "bytes",
            "lower",
            single(bytes_per_face(total, n)),
            {"faces": n, "total_bytes": total, **parts},
        )
    )


def run_search(ctx: BenchContext) -> SuiteResult:
    """Run the search suite at the context's collection sizes."""
    result = SuiteResult("search")
    sizes = ctx.pick("search", [10_000, 100_000, 1_000_000], [2_000])
    n_queries = 50 if ctx.quick else 300
    if ctx.threads > 0:
        faiss.omp_set_num_threads(ctx.threads)
    cosine = match_cosine(80.0, ctx.settings.model_pack)
    build_times: dict[str, float] = {}
    fill_times: dict[str, float] = {}
    store_kinds: dict[str, str] = {}
    curves: dict[str, list[list[float]]] = {"exact": [], "ann": [], "faiss_flat": [], "store": []}
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="facepipe-bench-search-") as tmp:
            _run_size(
                ctx, result, n, n_queries, cosine, Path(tmp), build_times, fill_times, store_kinds, curves
            )
    result.details = {
        "threshold_cosine": cosine,
        "queries": n_queries,
        "sizes": sizes,
        "ann_threshold": DEFAULT_ANN_THRESHOLD,
        "store_index_by_size": store_kinds,
        "fill_seconds": {k: round(v, 3) for k, v in fill_times.items()},
        "build_seconds": {k: round(v, 3) for k, v in build_times.items()},
        "p50_ms_by_size": curves,
        # this faiss dispatches its SIMD kernels at run time (FAISS_SIMD_LEVEL; FAISS_OPT_LEVEL is ignored)
        "faiss_simd_level": faiss.SIMDConfig.get_level_name(),
    }
    result.note = (
        f"{n_queries} held-out queries per size, searched one at a time (k={SEARCH_K}, FaceMatchThreshold "
        f"80 = cosine {cosine:.3f}); synthetic 128-d face-shaped vectors, identities of 1-6 faces, in a "
        f"real store. The store searches exactly up to {DEFAULT_ANN_THRESHOLD:,} faces and with the quantized scan above; "
        "'store' figures follow that switch, exact and ANN are measured at every size. Memory: serialized "
        "index bytes per face; disk: SQLite (vectors included) plus the saved index file. FAISS kernels: "
        f"{faiss.SIMDConfig.get_level_name()}."
    )
    if max(sizes) < 1_000_000:
        result.note += (
            " 1M faces: --sizes search=1000000 (about 2 GiB of memory and a few minutes on 2 cores)."
        )
    return result


def _run_size(
    ctx: BenchContext,
    result: SuiteResult,
    n: int,
    n_queries: int,
    cosine: float,
    data_dir: Path,
    build_times: dict[str, float],
    fill_times: dict[str, float],
    store_kinds: dict[str, str],
    curves: dict[str, list[list[float]]],
) -> None:
    """Measure one collection size into ``result`` (the store lives under ``data_dir``)."""
    cloud = face_cloud(n, n_queries, seed=ctx.seed)
    rows_top, truth_top_scores, rows_above = _ground_truth(cloud.vectors, cloud.queries, cosine, RECALL_K)
    collection = fill_store(data_dir, cloud.vectors)
    labels = collection.labels
    truth_top = labels[rows_top]
    truth_above = [{int(labels[i]) for i in row} for row in rows_above]
    true_matches = sum(len(t) for t in truth_above)
    fill_times[str(n)] = collection.fill_seconds
    try:
        indexes = store_indexes(collection, cloud.vectors)
        store_kind = next(ix for ix in indexes if ix.used_by_store)
        store_kinds[str(n)] = store_kind.index.kind
        flat = faiss.IndexFlatIP(cloud.vectors.shape[1])
        start = time.perf_counter()
        flat.add(cloud.vectors)
        build_times[f"faiss_flat.{n}"] = time.perf_counter() - start

        def flat_search(q: F32, flat: faiss.IndexFlatIP = flat) -> Hits:
            scores, rows = flat.search(q.reshape(1, -1), SEARCH_K)
            return [
                (int(labels[i]), float(s))
                for s, i in zip(scores[0], rows[0], strict=True)
                if i >= 0 and s >= cosine
            ]

        searchers: dict[str, Callable[[F32], Hits]] = {
            ix.name: partial(ix.search, k=SEARCH_K, min_cosine=cosine) for ix in indexes
        }
        searchers["faiss_flat"] = flat_search
        searchers["store"] = partial(collection.search, k=SEARCH_K, min_cosine=cosine)
        runs: dict[str, list[list[float]]] = {name: [] for name in searchers}
        found: dict[str, list[Hits]] = {}
        for ix in indexes:
            build_times[f"{ix.name}.{n}"] = ix.build_seconds
        for _ in range(ctx.warmup):
            for search in searchers.values():
                _one_by_one(search, cloud.queries[: min(20, n_queries)])
        for _ in range(ctx.repeat):
            for name, search in searchers.items():
                seconds, hits = _one_by_one(search, cloud.queries)
                runs[name].append(seconds)
                found[name] = hits
        # recall@10: every hit down to the lowest true 10th-best score, so exact search stays cheap.
        floor = float(truth_top_scores[:, -1].min()) - 1e-6
        peer_totals = [float(np.sum(r)) for r in runs["faiss_flat"]]
        for ix in indexes:
            label = ix.label + (" (the store's index at this size)" if ix.used_by_store else "")
            _latency_figures(result, ix.name, label, n, runs[ix.name])
            found_sets = [{h[0] for h in hits} for hits in found[ix.name]]
            _recall_figure(
                result, ix.name, label, n, threshold_recall(found_sets, truth_above), cosine, true_matches
            )
            top = np.full((n_queries, RECALL_K), -1, dtype=np.int64)
            for row, q in enumerate(cloud.queries):
                top_hits = ix.search(q, RECALL_K, floor)
                top[row, : len(top_hits)] = [h[0] for h in top_hits]
            result.add(
                Figure(
                    f"{ix.name}.recall_at_10.{n}",
                    f"{label}: recall@10, {n:,} faces",
                    "share",
                    "higher",
                    single(recall_at_k(top, truth_top, RECALL_K)),
                    {"faces": n, "k": RECALL_K},
                )
            )
            result.add(
                Figure(
                    f"{ix.name}.speedup_vs_faiss_flat.{n}",
                    f"{label}: speed vs plain faiss IndexFlatIP, {n:,} faces",
                    "x",
                    "higher",
                    spread(speedups([float(np.sum(r)) for r in runs[ix.name]], peer_totals)),
                    {"faces": n},
                )
            )
            _bytes_figure(
                result,
                f"{ix.name}.memory_bytes_per_face.{n}",
                f"{label}: bytes per face in memory, {n:,} faces",
                n,
                index_memory_bytes(ix.index),
                {},
            )
        store_label = f"facepipe store search ({INDEX_KIND_WORDS[store_kind.index.kind]} at this size)"
        _latency_figures(result, "store", store_label, n, runs["store"])
        store_found = [{h[0] for h in hits} for hits in found["store"]]
        _recall_figure(
            result, "store", store_label, n, threshold_recall(store_found, truth_above), cosine, true_matches
        )
        for name in searchers:
            curves[name].append([n, float(np.median([percentile(r, 50) for r in runs[name]])) * 1000])
        _latency_figures(result, "faiss_flat", "plain faiss IndexFlatIP (peer)", n, runs["faiss_flat"])
        del flat, indexes, searchers
    finally:
        collection.store.close()
    disk = data_dir_bytes(data_dir)
    _bytes_figure(
        result,
        f"store.disk_bytes_per_face.{n}",
        f"facepipe store: bytes per face on disk (SQLite with vectors, index file), {n:,} faces",
        n,
        sum(disk.values()),
        {f"{part}_bytes": size for part, size in disk.items()},
    )
