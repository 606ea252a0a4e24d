"""Benchmark statistics: percentiles, spreads, recall and verification rates on hand-built cases."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.bench.stats import (
    auc,
    percentile,
    rates_at,
    recall_at_k,
    reliability,
    roc,
    speedups,
    spread,
    tar_at_far,
    threshold_recall,
    time_paired,
    time_runs,
)


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # sorted 1 2 3 4
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 25) == pytest.approx(1.75)
    assert percentile(list(range(101)), 99) == pytest.approx(99.0)


def test_percentile_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
    with pytest.raises(ValueError, match="0-100"):
        percentile([1.0], 101)


def test_spread_reports_median_quartiles_and_extremes() -> None:
    s = spread([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.median, s.q1, s.q3, s.min, s.max, s.n) == (3.0, 2.0, 4.0, 1.0, 5.0, 5)
    ms = s.scaled(1000)
    assert (ms.median, ms.min, ms.max) == (3000.0, 1000.0, 5000.0)
    inverted = s.scaled(-1)
    assert inverted.min <= inverted.q1 <= inverted.q3 <= inverted.max


def test_time_runs_counts_calls() -> None:
    calls: list[int] = []
    seconds = time_runs(lambda: calls.append(1), repeat=3, warmup=2)
    assert len(seconds) == 3 and len(calls) == 5 and all(s >= 0 for s in seconds)
    with pytest.raises(ValueError):
        time_runs(lambda: None, repeat=0, warmup=0)


def test_time_paired_interleaves_and_speedups_are_peer_over_ours() -> None:
    order: list[str] = []
    ours, peer = time_paired(lambda: order.append("o"), lambda: order.append("p"), repeat=2, warmup=1)
    assert order == ["o", "p", "o", "p", "o", "p"] and len(ours) == len(peer) == 2
    assert speedups([1.0, 2.0], [2.0, 2.0]) == [2.0, 1.0]
    with pytest.raises(ValueError):
        speedups([1.0], [])


def test_recall_at_k_counts_overlap_per_query() -> None:
    truth = np.array([[1, 2, 3], [4, 5, 6]])
    found = np.array([[3, 1, 9], [7, 8, -1]])  # 2 of 3, then 0 of 3
    assert recall_at_k(found, truth, 3) == pytest.approx(2 / 6)
    assert recall_at_k(truth, truth, 3) == 1.0
    assert recall_at_k(found, truth, 1) == 0.0  # first columns: 3 vs 1, 7 vs 4
    with pytest.raises(ValueError):
        recall_at_k(found[:, :2], truth, 3)


def test_recall_at_k_ignores_missing_results() -> None:
    truth = np.array([[1, 2]])
    assert recall_at_k(np.array([[-1, -1]]), truth, 2) == 0.0
    assert recall_at_k(np.array([[2, -1]]), truth, 2) == 0.5


def test_threshold_recall_is_pooled_over_queries() -> None:
    truth = [{1, 2, 3}, {4}, set()]
    found = [{1, 2, 99}, set(), {5}]
    assert threshold_recall(found, truth) == pytest.approx(2 / 4)
    assert threshold_recall([set(), set()], [set(), set()]) is None
    with pytest.raises(ValueError):
        threshold_recall([set()], [])


def test_roc_tar_at_far_and_auc_on_hand_built_scores() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    same = np.array([True, True, False, True, False, False, True, False])
    curve = roc(scores, same)
    assert (curve.genuine, curve.impostor) == (4, 4)
    assert curve.thresholds.tolist() == sorted(scores.tolist(), reverse=True)
    assert curve.tar.tolist() == [0.25, 0.5, 0.5, 0.75, 0.75, 0.75, 1.0, 1.0]
    assert curve.far.tolist() == [0.0, 0.0, 0.25, 0.25, 0.5, 0.75, 0.75, 1.0]
    # at FAR <= 0.25 the lowest threshold is 0.6: 3 of 4 genuine accepted
    assert tar_at_far(curve, 0.25) == (0.75, pytest.approx(0.6))
    assert tar_at_far(curve, 0.01) is None  # 4 impostors cannot measure 1 %
    assert auc(curve) == pytest.approx(0.75)
    perfect = roc(np.array([0.9, 0.8, 0.1]), np.array([True, True, False]))
    assert auc(perfect) == 1.0


def test_roc_groups_tied_scores() -> None:
    curve = roc(np.array([0.5, 0.5, 0.1]), np.array([True, False, False]))
    assert curve.thresholds.tolist() == [0.5, 0.1]
    assert curve.tar.tolist() == [1.0, 1.0] and curve.far.tolist() == [0.5, 1.0]
    with pytest.raises(ValueError, match="both"):
        roc(np.array([0.5]), np.array([True]))


def test_rates_at_threshold() -> None:
    sim = np.array([95.0, 85.0, 70.0, 82.0, 10.0])
    same = np.array([True, True, True, False, False])
    r = rates_at(sim, same, 80.0)
    assert r.accuracy == pytest.approx(3 / 5)
    assert r.far == pytest.approx(1 / 2)
    assert r.frr == pytest.approx(1 / 3)


def test_reliability_bins_and_calibration_error() -> None:
    conf = np.array([5.0, 15.0, 95.0, 95.0, 100.0])
    same = np.array([False, False, True, True, False])
    table, ece = reliability(conf, same, bins=10)
    assert [(b.low, b.count) for b in table] == [(0.0, 1), (10.0, 1), (90.0, 3)]
    assert table[2].genuine_share == pytest.approx(2 / 3)
    assert table[2].mean_confidence == pytest.approx(290 / 3)
    expected = (1 * 0.05 + 1 * 0.15 + 3 * abs(290 / 300 - 2 / 3)) / 5
    assert ece == pytest.approx(expected)
