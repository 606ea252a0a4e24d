"""Model preparation transforms on small synthetic graphs, checked against ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.vision.prepare import (
    PREPARATION_VERSION,
    _dequantize_blocked,
    prepare_model,
    prepared_path,
)


def conv_prelu_model(quantized: bool) -> tuple[onnx.ModelProto, np.ndarray]:
    """x(1,4,6,6) -> Conv(w: 8x4x1x1, blocked int8) -> PRelu(slope per channel) -> y, with an unused input."""
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(8, 4)).astype(np.float32)
    scales = (np.abs(weight).max(axis=1, keepdims=True) / 127).astype(np.float32)
    q = np.round(weight / scales).astype(np.int8)
    slope = rng.uniform(0.05, 0.3, size=(8,)).astype(np.float32)
    inits = [
        numpy_helper.from_array(q, "w_q"),
        numpy_helper.from_array(scales, "w_s"),
        numpy_helper.from_array(np.zeros((8, 1), np.int8), "w_z"),
        numpy_helper.from_array(np.array([8, 4, 1, 1], np.int64), "w_shape"),
        numpy_helper.from_array(slope.reshape(8, 1, 1), "slope"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w_dq"], axis=1, block_size=4),
        helper.make_node("Reshape", ["w_dq", "w_shape"], ["w"]),
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("PRelu", ["c", "slope"], ["y"]),
    ]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6]),
        helper.make_tensor_value_info("unused", TensorProto.FLOAT, [1]),
        helper.make_tensor_value_info("slope", TensorProto.FLOAT, [8, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])], inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    expected_weight = (q.astype(np.float32) * scales).reshape(8, 4, 1, 1)
    return model, expected_weight


def reference(x: np.ndarray, weight: np.ndarray, slope: np.ndarray) -> np.ndarray:
    c = np.einsum("oi,nihw->nohw", weight[:, :, 0, 0], x)
    return np.where(c > 0, c, c * slope.reshape(1, -1, 1, 1))


def test_blocked_dequantize_matches_definition() -> None:
    q = np.arange(-6, 6, dtype=np.int8).reshape(2, 6)
    scale = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]], np.float32)
    zp = np.array([[0, 1, 0], [0, 0, 2]], np.int8)
    out = _dequantize_blocked(q, scale, zp, axis=1, block_size=2)
    expected = (q.astype(np.float32) - np.repeat(zp, 2, axis=1)) * np.repeat(scale, 2, axis=1)
    assert np.array_equal(out, expected)


def test_prepared_model_runs_in_ort_with_dynamic_batch() -> None:
    model, weight = conv_prelu_model(True)
    slope = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "slope"))
    prepared = prepare_model(
        model, ["fold_dequantize", "drop_constant_inputs", "dynamic_batch", "prelu_to_relu"]
    )
    ops = [n.op_type for n in prepared.graph.node]
    assert "DequantizeLinear" not in ops and "PRelu" not in ops and "Reshape" not in ops
    assert [i.name for i in prepared.graph.input] == ["x"]
    session = ort.InferenceSession(prepared.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(size=(3, 4, 6, 6)).astype(np.float32)
    y = session.run(None, {"x": x})[0]
    assert y.shape == (3, 8, 6, 6)
    assert np.allclose(y, reference(x, weight, slope), atol=1e-5)


def test_unknown_step_is_refused() -> None:
    model, _ = conv_prelu_model(True)
    with pytest.raises(ValueError, match="unknown model preparation step"):
        prepare_model(model, ["make_it_fast"])


def test_prepared_file_is_cached_by_digest_and_version(tmp_path: Path) -> None:
    model, _ = conv_prelu_model(True)
    source = tmp_path / "tiny.onnx"
    onnx.save(model, str(source))
    steps = ["fold_dequantize", "drop_constant_inputs"]
    first = prepared_path(source, "ab" * 32, steps, tmp_path / "cache")
    assert first.is_file() and f"prep{PREPARATION_VERSION}" in first.name and "abababab" in first.name
    stamp = first.stat().st_mtime_ns
    assert prepared_path(source, "ab" * 32, steps, tmp_path / "cache") == first
    assert first.stat().st_mtime_ns == stamp
    other = prepared_path(source, "cd" * 32, steps, tmp_path / "cache")
    assert other != first
    assert not list((tmp_path / "cache" / "models").glob("*.tmp"))
