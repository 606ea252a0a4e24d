"""The quantized index finds the matches above the threshold: on a synthetic 200,000-face collection of
face-shaped vectors, at least 99% of the stored faces at or above Similarity 80's cosine are returned,
for queries of people in the collection and of strangers alike."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.bench.synthetic import face_cloud
from pipeline.store.index import (
    PQ_CANDIDATES,
    PQ_MAX_CANDIDATES,
    IndexSet,
    build_collection_index,
    tune_candidates,
)

FACES = 200_000
MATCH_COSINE = 0.37
"""About Similarity 80's cosine for the default pack (pipeline.vision.calibration); fixed here so
that a recalibration does not change what this test measures."""
K = 100


@pytest.fixture(scope="module")
def collection() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stored vectors (identities whose number is a multiple of 10 held out), queries, stranger flags."""
    cloud = face_cloud(int(FACES * 1.15), 400, seed=7)
    held = cloud.identity % 10 == 0
    stored = np.ascontiguousarray(cloud.vectors[~held][:FACES])
    assert len(stored) == FACES
    return stored, cloud.queries, cloud.query_identity % 10 == 0


def test_quantized_index_finds_99_percent_of_matches_above_threshold(
    collection: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    vectors, queries, stranger = collection
    assert 20 <= stranger.sum() <= 80  # both kinds of query are measured
    labels = np.arange(5_000, 5_000 + FACES, dtype=np.int64)
    idx = build_collection_index(1, 128, "pq", labels, vectors, 0)
    assert idx.kind == "pq" and idx.live_count == FACES and idx.tuned_faces == FACES
    assert PQ_CANDIDATES <= idx.candidates <= PQ_MAX_CANDIDATES
    assert idx.candidates < FACES // 20  # a real cut: the re-ranking is not an exact search
    searcher = IndexSet(None)
    found = {False: 0, True: 0}
    wanted = {False: 0, True: 0}
    for query, is_stranger in zip(queries, stranger, strict=True):
        sims = vectors @ query
        truth = np.flatnonzero(sims >= MATCH_COSINE)
        truth = truth[np.argsort(-sims[truth], kind="stable")[:K]]
        hits = searcher.search(idx, query, K, MATCH_COSINE)
        got = {label - 5_000 for label, _ in hits}
        # every returned score is the exact cosine, at or above the threshold, best first
        scores = [score for _, score in hits]
        assert scores == sorted(scores, reverse=True)
        assert all(score >= MATCH_COSINE for score in scores)
        assert np.allclose(
            scores, sims[np.array(sorted(got, key=lambda p: -sims[p]), dtype=np.int64)], atol=1e-5
        )
        found[bool(is_stranger)] += len(got & set(truth.tolist()))
        wanted[bool(is_stranger)] += len(truth)
    assert min(wanted.values()) > 150  # strangers do have matches above the threshold at this size
    assert (found[False] + found[True]) / (wanted[False] + wanted[True]) >= 0.99
    assert found[True] / wanted[True] >= 0.98


def test_too_few_candidates_would_miss_matches(collection: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """The recall above comes from the measured candidate count: re-ranking a tenth of it loses
    matches (so the test above can fail)."""
    vectors, queries, _ = collection
    labels = np.arange(FACES, dtype=np.int64)
    small = build_collection_index(1, 128, "pq", labels[:50_000], vectors[:50_000], 0)
    assert small.candidates == tune_candidates(small.index, vectors[:50_000], labels[:50_000])
    searcher = IndexSet(None)
    sims = queries[:80] @ vectors[:50_000].T
    wanted = int((sims >= 0.3).sum())
    full = sum(len(searcher.search(small, q, 1000, 0.3)) for q in queries[:80])
    small.candidates = 40
    starved = sum(len(searcher.search(small, q, 1000, 0.3)) for q in queries[:80])
    assert full >= 0.99 * wanted
    assert starved < 0.9 * wanted
