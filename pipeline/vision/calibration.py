"""Calibrated Similarity: cosine similarity of two embeddings -> 0-100.

The map is piecewise linear in the cosine between anchors (cosine, similarity) fitted on labeled
pairs by scripts/calibrate.py and stored in the pack's manifest. It runs from exactly 0 at cosine
-1 to exactly 100 at cosine 1, and each anchor in between sits on the strangers' measured
false-accept curve (for the default pack, scripts/calibrate.py's ANCHOR_RATES: 50 where 1 in 100
pairs of strangers scores higher, 80 where 1 in 1,000 does, 90 at 3 in 10,000, 95 at 2 in 10,000,
99 at 1 in 10,000; below 50, 2, 5, 10 and 25 at 99, 90, 50 and 10 in 100), so scores keep their
resolution: strangers are graded over the low range and genuine pairs over the high one, and pairs
above 99 are spread by their cosine up to 100.

Both directions are strictly increasing and exact inverses of each other (to float rounding):
``cosine_at(similarity(c)) == c`` and ``similarity(cosine_at(s)) == s``; at an anchor both are
exact.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SimilarityMap:
    """Monotone piecewise-linear map between cosine (-1..1) and Similarity (0..100).

    ``anchors``: (cosine, similarity) points, both strictly increasing, the first (-1, 0) and the
    last (1, 100).
    """

    anchors: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        points = tuple((float(c), float(s)) for c, s in self.anchors)
        object.__setattr__(self, "anchors", points)
        if len(points) < 2 or points[0] != (-1.0, 0.0) or points[-1] != (1.0, 100.0):
            raise ValueError("calibration anchors must run from (cosine -1, 0) to (cosine 1, 100)")
        for (c0, s0), (c1, s1) in itertools.pairwise(points):
            if not (c0 < c1 and s0 < s1):
                raise ValueError(
                    f"calibration anchors must increase in both cosine and similarity; got "
                    f"({c0}, {s0}) then ({c1}, {s1})"
                )

    @classmethod
    def from_inner_anchors(cls, inner: dict[float, float]) -> SimilarityMap:
        """From {similarity: cosine} for the anchors strictly between 0 and 100."""
        points = sorted((float(c), float(s)) for s, c in inner.items())
        return cls(((-1.0, 0.0), *points, (1.0, 100.0)))

    @classmethod
    def from_manifest(cls, calibration: dict[str, Any]) -> SimilarityMap:
        """From a manifest's ``calibration`` object: its ``anchors`` list of {similarity, cosine}."""
        if calibration.get("kind") != "piecewise_linear":
            raise ValueError(
                f"calibration kind must be 'piecewise_linear' (refit with scripts/calibrate.py); "
                f"got {calibration.get('kind')!r}"
            )
        return cls.from_inner_anchors(
            {float(a["similarity"]): float(a["cosine"]) for a in calibration["anchors"]}
        )

    def anchor_cosine(self, similarity: float) -> float:
        """The cosine of the anchor at exactly ``similarity``; KeyError if there is none."""
        for c, s in self.anchors:
            if s == float(similarity):
                return c
        raise KeyError(similarity)

    def similarity(self, cosine: float) -> float:
        """Similarity 0-100 for a cosine similarity (values outside -1..1 are clipped)."""
        c = min(1.0, max(-1.0, float(cosine)))
        cosines = [a[0] for a in self.anchors]
        i = min(bisect.bisect_right(cosines, c), len(cosines) - 1) - 1
        (c0, s0), (c1, s1) = self.anchors[i], self.anchors[i + 1]
        return min(100.0, max(0.0, s0 + (c - c0) * (s1 - s0) / (c1 - c0)))

    def cosine_at(self, similarity: float) -> float:
        """The cosine whose Similarity is ``similarity`` (0 -> -1, 100 -> 1; clipped outside)."""
        s = min(100.0, max(0.0, float(similarity)))
        levels = [a[1] for a in self.anchors]
        i = min(bisect.bisect_right(levels, s), len(levels) - 1) - 1
        (c0, s0), (c1, s1) = self.anchors[i], self.anchors[i + 1]
        return min(1.0, max(-1.0, c0 + (s - s0) * (c1 - c0) / (s1 - s0)))
