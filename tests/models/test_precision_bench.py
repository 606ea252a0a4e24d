"""The figures of benchmarks/bench_embedder_precision.py: 10-fold accuracy and SFace's layer groups."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_embedder_precision.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("facepipe_bench_embedder_precision", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _brute_force_ten_fold(cosine: np.ndarray, same: np.ndarray) -> float:
    """Every candidate threshold tried on the training folds, the lowest of the best kept."""
    fold = np.arange(len(cosine)) % 10
    accuracies = []
    for k in range(10):
        train, test = fold != k, fold == k
        candidates = np.unique(cosine[train])
        scores = [((cosine[train] >= t) == same[train]).mean() for t in candidates]
        best = candidates[int(np.argmax(scores))]
        accuracies.append(((cosine[test] >= best) == same[test]).mean())
    return float(np.mean(accuracies))


def test_ten_fold_accuracy_matches_trying_every_threshold() -> None:
    bench = _bench()
    rng = np.random.default_rng(3)
    same = rng.random(600) < 0.5
    cosine = np.where(same, rng.normal(0.6, 0.15, 600), rng.normal(0.1, 0.15, 600))
    cosine[:25] = -1.0  # pairs without a face: one tied value
    expected = _brute_force_ten_fold(cosine, same)
    assert bench.ten_fold_accuracy(cosine, same) == expected
    assert 0.9 < expected < 1.0
    separable = np.where(same, 0.9, 0.1)
    assert bench.ten_fold_accuracy(separable, same) == 1.0


def test_layer_groups_split_sface_by_convolution() -> None:
    bench = _bench()
    names = [
        "_minusscalar0",
        "conv_1_conv2d",
        "conv_1_relu__add",
        "conv_2_dw_relu__keep_conv",
        "conv_2_dw_relu__add",
        "conv_2_conv2d",
        "conv_2_relu__keep_dw1_conv",
        "conv_12_dw_relu__slope_conv",
        "bn1",
        "pre_fc1",
    ]
    assert bench.layer_groups(names) == {
        "conv_1": ["conv_1_conv2d", "conv_1_relu__add"],
        "conv_2_dw": ["conv_2_dw_relu__keep_conv", "conv_2_dw_relu__add"],
        "conv_2": ["conv_2_conv2d", "conv_2_relu__keep_dw1_conv"],
        "conv_12_dw": ["conv_12_dw_relu__slope_conv"],
        "tail": ["bn1", "pre_fc1"],
    }
