"""The calibrated Similarity map: range, monotonicity, anchors and exact inverse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.vision.calibration import SimilarityMap

MAP = SimilarityMap(cosine_at_80=0.37, cosine_at_99=0.5)


def test_anchors_and_ends() -> None:
    assert MAP.similarity(0.37) == pytest.approx(80, abs=0.01)
    assert MAP.similarity(0.5) == pytest.approx(99, abs=0.01)
    assert MAP.similarity(-1.0) == 0.0 and MAP.similarity(1.0) == 100.0
    assert MAP.similarity(5.0) == 100.0 and MAP.similarity(-5.0) == 0.0
    assert MAP.cosine_at(0) == -1.0 and MAP.cosine_at(100) == 1.0


@given(st.floats(-1, 1), st.floats(-1, 1))
def test_monotone_increasing(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert 0.0 <= MAP.similarity(lo) <= MAP.similarity(hi) <= 100.0


@given(st.floats(0.5, 99.999))
def test_cosine_at_inverts_similarity(similarity: float) -> None:
    assert MAP.similarity(MAP.cosine_at(similarity)) == pytest.approx(similarity, abs=1e-6)


def test_rejects_unordered_anchors() -> None:
    with pytest.raises(ValueError):
        SimilarityMap(cosine_at_80=0.5, cosine_at_99=0.4)
