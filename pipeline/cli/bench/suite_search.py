"""Search suite: latency and recall of the collection indexes on synthetic face-shaped vectors.

For each collection size: the store's exact index and its ANN index answer the same held-out
queries one at a time (as SearchFaces does); latency percentiles are per query, recall is measured
against brute-force ground truth: the share of above-threshold matches found, and recall@10. The
peer is a plain ``faiss.IndexFlatIP`` over the same vectors, timed in the same runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import faiss
import numpy as np
import numpy.typing as npt

from pipeline.cli.bench.context import BenchContext
from pipeline.cli.bench.report import Figure, SuiteResult, single
from pipeline.cli.bench.stats import percentile, recall_at_k, speedups, spread, threshold_recall
from pipeline.cli.bench.synthetic import face_cloud
from pipeline.cli.bench.vectors import Hits, match_cosine, store_indexes

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

SEARCH_K = 100
"""Results asked per query for the threshold search (SearchFaces' MaxFaces)."""
RECALL_K = 10


def _ground_truth(vectors: F32, queries: F32, cosine: float, k: int) -> tuple[I64, F32, list[set[int]]]:
    """Exact top-k ids and scores (queries, k), and per query the ids of every vector at or above ``cosine``."""
    top = np.empty((queries.shape[0], k), dtype=np.int64)
    top_scores = np.empty((queries.shape[0], k), dtype=np.float32)
    above: list[set[int]] = []
    for start in range(0, queries.shape[0], 64):
        sims = queries[start : start + 64] @ vectors.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(sims, part, axis=1).argsort(axis=1)[:, ::-1]
        top[start : start + 64] = np.take_along_axis(part, order, axis=1)
        top_scores[start : start + 64] = np.take_along_axis(sims, top[start : start + 64], axis=1)
        above += [set(np.nonzero(row >= cosine)[0].tolist()) for row in sims]
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


def run_search(ctx: BenchContext) -> SuiteResult:
    """Run the search suite at the context's collection sizes."""
    result = SuiteResult("search")
    sizes = ctx.pick("search", [10_000, 100_000, 1_000_000], [2_000])
    n_queries = 50 if ctx.quick else 300
    if ctx.threads > 0:
        faiss.omp_set_num_threads(ctx.threads)
    cosine = match_cosine(80.0, ctx.settings.model_pack)
    build_times: dict[str, float] = {}
    curves: dict[str, list[list[float]]] = {"exact": [], "ann": [], "faiss_flat": []}
    for n in sizes:
        cloud = face_cloud(n, n_queries, seed=ctx.seed)
        truth_top, truth_top_scores, truth_above = _ground_truth(
            cloud.vectors, cloud.queries, cosine, RECALL_K
        )
        indexes = store_indexes(cloud.vectors, np.arange(n, dtype=np.int64))
        flat = faiss.IndexFlatIP(cloud.vectors.shape[1])
        start = time.perf_counter()
        flat.add(cloud.vectors)
        build_times[f"faiss_flat.{n}"] = time.perf_counter() - start

        def flat_search(q: F32, flat: faiss.IndexFlatIP = flat) -> Hits:
            scores, labels = flat.search(q.reshape(1, -1), SEARCH_K)
            return [
                (int(i), float(s))
                for s, i in zip(scores[0], labels[0], strict=True)
                if i >= 0 and s >= cosine
            ]

        searchers: dict[str, Callable[[F32], Hits]] = {
            ix.name: partial(ix.search, k=SEARCH_K, min_cosine=cosine) for ix in indexes
        }
        searchers["faiss_flat"] = flat_search
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
            _latency_figures(result, ix.name, ix.label, n, runs[ix.name])
            t_recall = threshold_recall([{h[0] for h in hits} for hits in found[ix.name]], truth_above)
            if t_recall is not None:
                result.add(
                    Figure(
                        f"{ix.name}.recall_above_threshold.{n}",
                        f"{ix.label}: share of matches above Similarity 80 found, {n:,} faces",
                        "share",
                        "higher",
                        single(t_recall),
                        {
                            "faces": n,
                            "cosine": round(cosine, 4),
                            "true_matches": sum(len(t) for t in truth_above),
                        },
                    )
                )
            top = np.full((n_queries, RECALL_K), -1, dtype=np.int64)
            for row, q in enumerate(cloud.queries):
                top_hits = ix.search(q, RECALL_K, floor)
                top[row, : len(top_hits)] = [h[0] for h in top_hits]
            result.add(
                Figure(
                    f"{ix.name}.recall_at_10.{n}",
                    f"{ix.label}: recall@10, {n:,} faces",
                    "share",
                    "higher",
                    single(recall_at_k(top, truth_top, RECALL_K)),
                    {"faces": n, "k": RECALL_K},
                )
            )
            result.add(
                Figure(
                    f"{ix.name}.speedup_vs_faiss_flat.{n}",
                    f"{ix.label}: speed vs plain faiss IndexFlatIP, {n:,} faces",
                    "x",
                    "higher",
                    spread(speedups([float(np.sum(r)) for r in runs[ix.name]], peer_totals)),
                    {"faces": n},
                )
            )
        for name in searchers:
            curves[name].append([n, float(np.median([percentile(r, 50) for r in runs[name]])) * 1000])
        _latency_figures(result, "faiss_flat", "plain faiss IndexFlatIP (peer)", n, runs["faiss_flat"])
        del flat, indexes, searchers
    result.details = {
        "threshold_cosine": cosine,
        "queries": n_queries,
        "sizes": sizes,
        "build_seconds": {k: round(v, 3) for k, v in build_times.items()},
        "p50_ms_by_size": curves,
    }
    result.note = (
        f"{n_queries} held-out queries per size, searched one at a time through the store's search "
        f"(k={SEARCH_K}, FaceMatchThreshold 80 = cosine {cosine:.3f}); synthetic 128-d face-shaped vectors, "
        "4 faces per identity. The store itself switches from exact to HNSW above 50,000 faces; both are "
        "measured at every size here."
    )
    if max(sizes) < 1_000_000:
        result.note += " 1M faces: --sizes search=1000000 (HNSW build takes several minutes on 2 cores)."
    return result
