"""Calibrated Similarity: cosine similarity of two embeddings -> 0-100.

The map is a logistic curve in the cosine, rescaled so cosine -1 gives exactly 0 and cosine 1
exactly 100. It is fixed by two anchors fitted on labeled pairs (scripts/calibrate.py):
``cosine_at_80`` (where about 1 in 1,000 pairs of strangers scores higher) and ``cosine_at_99``
(where far fewer strangers, but still most genuine pairs, score higher). Both directions are
exact closed forms, so ``cosine_at(similarity(c)) == c``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@dataclass(frozen=True)
class SimilarityMap:
    """Monotone map between cosine (-1..1) and Similarity (0..100), anchored at 80 and 99."""

    cosine_at_80: float
    cosine_at_99: float

    def __post_init__(self) -> None:
        if not -1.0 < self.cosine_at_80 < self.cosine_at_99 < 1.0:
            raise ValueError("calibration needs -1 < cosine_at_80 < cosine_at_99 < 1")

    @classmethod
    def from_manifest(cls, calibration: dict[str, Any]) -> SimilarityMap:
        """From a manifest's ``calibration`` object."""
        return cls(float(calibration["cosine_at_80"]), float(calibration["cosine_at_99"]))

    @property
    def _slope(self) -> float:
        # logistic 100 * sigmoid(slope * (c - centre)): 80 at logit(0.8), 99 at logit(0.99)
        return (math.log(99.0) - math.log(4.0)) / (self.cosine_at_99 - self.cosine_at_80)

    @property
    def _centre(self) -> float:
        return self.cosine_at_80 - math.log(4.0) / self._slope

    def _raw(self, cosine: float) -> float:
        return _sigmoid(self._slope * (cosine - self._centre))

    def similarity(self, cosine: float) -> float:
        """Similarity 0-100 for a cosine similarity (values outside -1..1 are clipped)."""
        c = min(1.0, max(-1.0, float(cosine)))
        low, high = self._raw(-1.0), self._raw(1.0)
        return min(100.0, max(0.0, 100.0 * (self._raw(c) - low) / (high - low)))

    def cosine_at(self, similarity: float) -> float:
        """The cosine whose Similarity is ``similarity`` (0 -> -1, 100 -> 1)."""
        s = float(similarity)
        if s <= 0.0:
            return -1.0
        if s >= 100.0:
            return 1.0
        low, high = self._raw(-1.0), self._raw(1.0)
        p = low + s / 100.0 * (high - low)
        cosine = self._centre + math.log(p / (1.0 - p)) / self._slope
        return min(1.0, max(-1.0, cosine))
