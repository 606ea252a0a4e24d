"""Numbers behind every benchmark figure: timing, percentiles, spreads, recall and verification rates.

Pure numpy; no models. Times are seconds unless a name says otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def percentile(values: Sequence[float] | npt.NDArray[np.floating], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks (numpy's default).

    Raises ValueError on an empty input or q outside 0-100.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("percentile of an empty sample")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within 0-100, got {q}")
    return float(np.percentile(data, q))


@dataclass(frozen=True)
class Spread:
    """Median of repeated measurements with their spread (quartiles and extremes), in the figure's unit."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    n: int

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)

    def scaled(self, factor: float) -> Spread:
        """The same spread with every value multiplied by ``factor`` (e.g. seconds to milliseconds)."""
        lo, hi = sorted((self.min * factor, self.max * factor))
        q_lo, q_hi = sorted((self.q1 * factor, self.q3 * factor))
        return Spread(self.median * factor, q_lo, q_hi, lo, hi, self.n)


def spread(samples: Sequence[float] | npt.NDArray[np.floating]) -> Spread:
    """Median, quartiles (25th/75th percentiles), min and max of a non-empty sample."""
    data = np.asarray(samples, dtype=np.float64)
    if data.size == 0:
        raise ValueError("spread of an empty sample")
    return Spread(
        median=percentile(data, 50),
        q1=percentile(data, 25),
        q3=percentile(data, 75),
        min=float(data.min()),
        max=float(data.max()),
        n=int(data.size),
    )


def time_runs(run: Callable[[], object], repeat: int, warmup: int) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls of ``run``, after ``warmup`` untimed calls."""
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    for _ in range(max(0, warmup)):
        run()
    seconds: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return seconds


def time_paired(
    ours: Callable[[], object], peer: Callable[[], object], repeat: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Seconds per call of two alternatives, interleaved run by run so both see the same machine load."""
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    for _ in range(max(0, warmup)):
        ours()
        peer()
    ours_s: list[float] = []
    peer_s: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        ours()
        ours_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        peer()
        peer_s.append(time.perf_counter() - start)
    return ours_s, peer_s


def speedups(ours_seconds: Sequence[float], peer_seconds: Sequence[float]) -> list[float]:
    """Per-run ratio peer time / our time (above 1: ours is faster), from paired runs."""
    if len(ours_seconds) != len(peer_seconds) or not ours_seconds:
        raise ValueError("speedups need two non-empty samples of the same length")
    return [p / o for o, p in zip(ours_seconds, peer_seconds, strict=True)]


def recall_at_k(found: npt.NDArray[np.integer], truth: npt.NDArray[np.integer], k: int) -> float:
    """Mean over queries of |found top-k ∩ true top-k| / k.

    ``found`` and ``truth`` have shape (queries, >= k): row i holds the ids returned for query i, best
    first; -1 marks "no result" and never matches.
    """
    if found.ndim != 2 or truth.ndim != 2 or found.shape[0] != truth.shape[0]:
        raise ValueError("found and truth must be 2-d with one row per query")
    if k < 1 or found.shape[1] < k or truth.shape[1] < k:
        raise ValueError(f"both result lists need at least k={k} columns")
    if found.shape[0] == 0:
        raise ValueError("recall of zero queries")
    hits = 0
    for row_found, row_true in zip(found[:, :k], truth[:, :k], strict=True):
        wanted = {int(i) for i in row_true if i >= 0}
        hits += len(wanted & {int(i) for i in row_found if i >= 0})
    return hits / (k * found.shape[0])


def threshold_recall(found: Sequence[set[int]], truth: Sequence[set[int]]) -> float | None:
    """Share of all true above-threshold matches (pooled over queries) that the search returned.

    None when no query has any true match (recall is then undefined).
    """
    if len(found) != len(truth):
        raise ValueError("found and truth need one set per query")
    wanted = sum(len(t) for t in truth)
    if wanted == 0:
        return None
    return sum(len(f & t) for f, t in zip(found, truth, strict=True)) / wanted


@dataclass(frozen=True)
class Roc:
    """ROC of a verification score: rates at each distinct threshold, thresholds descending.

    ``far[i]``/``tar[i]`` are the shares of impostor/genuine pairs with score >= ``thresholds[i]``.
    """

    thresholds: FloatArray
    far: FloatArray
    tar: FloatArray
    genuine: int
    impostor: int


def roc(scores: npt.NDArray[np.floating], same: npt.NDArray[np.bool_]) -> Roc:
    """ROC over every distinct score; needs at least one genuine (same) and one impostor pair."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(same, dtype=bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError("scores and labels must be 1-d and of equal length")
    n_gen, n_imp = int(y.sum()), int((~y).sum())
    if n_gen == 0 or n_imp == 0:
        raise ValueError("ROC needs both genuine and impostor pairs")
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(~y_sorted)
    last_of_each = np.r_[np.nonzero(np.diff(s_sorted))[0], s_sorted.size - 1]
    return Roc(
        thresholds=s_sorted[last_of_each],
        far=fp[last_of_each] / n_imp,
        tar=tp[last_of_each] / n_gen,
        genuine=n_gen,
        impostor=n_imp,
    )


def tar_at_far(curve: Roc, far: float) -> tuple[float, float] | None:
    """(TAR, threshold) at the lowest threshold whose false accept rate is at most ``far``.

    None when the sample has too few impostor pairs to measure that rate (far < 1 / impostors).
    """
    if far * curve.impostor < 1.0:
        return None
    ok = np.nonzero(curve.far <= far)[0]
    if ok.size == 0:
        return (0.0, float("inf"))
    i = int(ok[-1])
    return (float(curve.tar[i]), float(curve.thresholds[i]))


def auc(curve: Roc) -> float:
    """Area under the ROC (trapezoids from (0, 0) to (1, 1))."""
    x = np.r_[0.0, curve.far, 1.0]
    y = np.r_[0.0, curve.tar, 1.0]
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


@dataclass(frozen=True)
class Rates:
    """Decisions ``score >= threshold`` against the labels: accuracy, false accept and false reject rates."""

    threshold: float
    accuracy: float
    far: float
    frr: float

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def rates_at(scores: npt.NDArray[np.floating], same: npt.NDArray[np.bool_], threshold: float) -> Rates:
    """Accuracy, FAR (impostors accepted) and FRR (genuines rejected) for ``score >= threshold``."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(same, dtype=bool)
    accept = s >= threshold
    n_gen, n_imp = int(y.sum()), int((~y).sum())
    return Rates(
        threshold=threshold,
        accuracy=float(np.mean(accept == y)) if s.size else float("nan"),
        far=float(np.sum(accept & ~y) / n_imp) if n_imp else float("nan"),
        frr=float(np.sum(~accept & y) / n_gen) if n_gen else float("nan"),
    )


@dataclass(frozen=True)
class ReliabilityBin:
    """Pairs whose confidence fell in [low, high): their mean confidence and observed share of genuine pairs."""

    low: float
    high: float
    count: int
    mean_confidence: float
    genuine_share: float


def reliability(
    confidence: npt.NDArray[np.floating], same: npt.NDArray[np.bool_], bins: int = 10
) -> tuple[list[ReliabilityBin], float]:
    """Reliability table of a 0-100 confidence and its expected calibration error (in 0-1 units).

    The last bin includes 100. Empty bins are left out of the table.
    """
    c = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(same, dtype=bool)
    edges = np.linspace(0.0, 100.0, bins + 1)
    which = np.clip(np.digitize(c, edges[1:-1], right=False), 0, bins - 1)
    table: list[ReliabilityBin] = []
    ece = 0.0
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        if n == 0:
            continue
        mean_conf = float(c[mask].mean())
        share = float(y[mask].mean())
        table.append(ReliabilityBin(float(edges[b]), float(edges[b + 1]), n, mean_conf, share))
        ece += n / c.size * abs(mean_conf / 100.0 - share)
    return table, ece
