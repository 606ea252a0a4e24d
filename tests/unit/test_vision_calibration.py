"""The calibrated Similarity map: range, monotonicity, anchors, exact inverse, and the shipped fit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.vision.calibration import SimilarityMap
from pipeline.vision.packs import read_manifest

MAP = SimilarityMap.from_inner_anchors({10: 0.1, 50: 0.3, 80: 0.37, 99: 0.5})
SHIPPED = SimilarityMap.from_manifest(read_manifest("default")["calibration"])


def test_anchors_and_ends_are_exact() -> None:
    for level, cosine in ((10, 0.1), (50, 0.3), (80, 0.37), (99, 0.5)):
        assert MAP.similarity(cosine) == level
        assert MAP.cosine_at(level) == cosine
    assert MAP.similarity(-1.0) == 0.0 and MAP.similarity(1.0) == 100.0
    assert MAP.similarity(5.0) == 100.0 and MAP.similarity(-5.0) == 0.0
    assert MAP.cosine_at(0) == -1.0 and MAP.cosine_at(100) == 1.0
    assert MAP.cosine_at(-3) == -1.0 and MAP.cosine_at(250) == 1.0


def test_linear_between_anchors() -> None:
    assert MAP.similarity(0.435) == pytest.approx(89.5)
    assert MAP.similarity(0.75) == pytest.approx(99.5)


@given(st.floats(-1, 1), st.floats(-1, 1))
def test_monotone_increasing(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert 0.0 <= MAP.similarity(lo) <= MAP.similarity(hi) <= 100.0
    assert 0.0 <= SHIPPED.similarity(lo) <= SHIPPED.similarity(hi) <= 100.0


@given(st.floats(0, 100))
def test_cosine_at_inverts_similarity(similarity: float) -> None:
    for calibration in (MAP, SHIPPED):
        assert calibration.similarity(calibration.cosine_at(similarity)) == pytest.approx(
            similarity, abs=1e-9
        )


@given(st.floats(-1, 1))
def test_similarity_inverts_cosine_at(cosine: float) -> None:
    for calibration in (MAP, SHIPPED):
        assert calibration.cosine_at(calibration.similarity(cosine)) == pytest.approx(cosine, abs=1e-9)


def test_rejects_bad_anchors() -> None:
    with pytest.raises(ValueError, match="increase"):
        SimilarityMap.from_inner_anchors({80: 0.5, 99: 0.4})
    with pytest.raises(ValueError, match="increase"):
        SimilarityMap.from_inner_anchors({80: 0.4, 90: 0.4})
    with pytest.raises(ValueError, match="run from"):
        SimilarityMap(((-1.0, 0.0), (0.4, 80.0)))
    with pytest.raises(ValueError, match="piecewise_linear"):
        SimilarityMap.from_manifest({"kind": "logistic", "cosine_at_80": 0.37, "cosine_at_99": 0.4})


def test_shipped_calibration_has_the_published_anchors() -> None:
    """models/default.json: each anchor at its stated false-accept rate (models/calibration.md)."""
    calibration = read_manifest("default")["calibration"]
    stated = {a["similarity"]: a["false_accept_rate"] for a in calibration["anchors"]}
    assert stated == {2: 0.99, 5: 0.9, 10: 0.5, 25: 0.1, 50: 1e-2, 80: 1e-3, 90: 3e-4, 95: 2e-4, 99: 1e-4}
    assert calibration["embeddings"] == "plain"


def test_shipped_map_keeps_resolution() -> None:
    """Strangers' typical cosines get graded low scores and genuine pairs of different strength
    get different scores above 99 (the old map gave 0.00 and 100.00 flat)."""
    assert 5 < SHIPPED.similarity(0.05) < SHIPPED.similarity(0.2) < 25
    assert 99 < SHIPPED.similarity(0.6) < SHIPPED.similarity(0.7) < SHIPPED.similarity(0.8) < 100
    assert SHIPPED.similarity(0.7) - SHIPPED.similarity(0.6) > 0.1
