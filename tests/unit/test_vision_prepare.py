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


def depthwise_bn_prelu_model(slope: np.ndarray) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """x(N,4,6,6) -> depthwise 3x3 Conv (stride 2, pad 1, bias) -> BatchNormalization -> PRelu -> y."""
    rng = np.random.default_rng(3)
    arrays = {
        "w": rng.normal(size=(4, 1, 3, 3)).astype(np.float32),
        "b": rng.normal(size=(4,)).astype(np.float32),
        "gamma": rng.uniform(0.5, 2.0, size=(4,)).astype(np.float32),
        "beta": rng.normal(size=(4,)).astype(np.float32),
        "mean": rng.normal(size=(4,)).astype(np.float32),
        "var": rng.uniform(0.5, 2.0, size=(4,)).astype(np.float32),
        "slope": slope.reshape(4, 1, 1).astype(np.float32),
    }
    nodes = [
        helper.make_node(
            "Conv", ["x", "w", "b"], ["c"], group=4, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]
        ),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"], epsilon=1e-3),
        helper.make_node("PRelu", ["n", "slope"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 3, 3])],
        [numpy_helper.from_array(v, k) for k, v in arrays.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model, arrays


def run_model(model: onnx.ModelProto, x: np.ndarray, optimize: bool = True) -> np.ndarray:
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


@pytest.mark.parametrize("largest_slope", [0.9, 1.3])
def test_prelu_after_depthwise_conv_keeps_outputs(largest_slope: float) -> None:
    slope = np.array([-0.4, 0.0, 0.25, largest_slope])
    model, _ = depthwise_bn_prelu_model(slope)
    x = np.random.default_rng(4).normal(size=(2, 4, 6, 6)).astype(np.float32) * 10
    expected = run_model(model, x, optimize=False)
    prepared = prepare_model(onnx.ModelProto.FromString(model.SerializeToString()), ["prelu_to_relu"])
    ops = [n.op_type for n in prepared.graph.node]
    assert "PRelu" not in ops
    if largest_slope <= 1.0:
        # Relu(D_(1-s)(x)) + D_s(x): two depthwise convolutions, the BatchNormalization folded in
        assert sorted(ops) == ["Add", "Conv", "Conv", "Relu"]
    else:
        # a slope above 1 makes the function concave: the general (1 - s) * Relu(x) + s * x form
        assert ops.count("Mul") == 2 and "BatchNormalization" in ops
    assert np.allclose(run_model(prepared, x), expected, atol=1e-4, rtol=1e-5)


def test_prepared_file_name_depends_on_the_steps(tmp_path: Path) -> None:
    model, _ = conv_prelu_model(True)
    source = tmp_path / "tiny.onnx"
    onnx.save(model, str(source))
    short = prepared_path(source, "ab" * 32, ["fold_dequantize", "drop_constant_inputs"], tmp_path)
    longer = prepared_path(
        source, "ab" * 32, ["fold_dequantize", "drop_constant_inputs", "prelu_to_relu"], tmp_path
    )
    assert short != longer and short.is_file() and longer.is_file()
    assert "PRelu" not in {n.op_type for n in onnx.load(str(longer)).graph.node}


def test_prelu_to_depthwise_keeps_outputs_with_no_per_channel_mul() -> None:
    """The int8 form: a PRelu after a pointwise conv becomes two 1x1 depthwise convs, Relu and Add."""
    model, weight = conv_prelu_model(True)
    slope = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "slope"))
    prepared = prepare_model(
        model, ["fold_dequantize", "drop_constant_inputs", "dynamic_batch", "prelu_to_depthwise"]
    )
    ops = [n.op_type for n in prepared.graph.node]
    assert "PRelu" not in ops and "Mul" not in ops
    assert sorted(ops) == ["Add", "Conv", "Conv", "Conv", "Relu"]
    depthwise = [n for n in prepared.graph.node if n.op_type == "Conv" and n.name.endswith("_dw1_conv")]
    assert len(depthwise) == 2 and all(
        helper.get_attribute_value(a) == 8 for n in depthwise for a in n.attribute if a.name == "group"
    )
    x = np.random.default_rng(5).normal(size=(3, 4, 6, 6)).astype(np.float32)
    assert np.allclose(run_model(prepared, x), reference(x, weight, slope), atol=1e-5)


def test_prelu_forms_are_alternatives() -> None:
    model, _ = conv_prelu_model(True)
    with pytest.raises(ValueError, match="alternatives"):
        prepare_model(model, ["fold_dequantize", "prelu_to_relu", "prelu_to_depthwise"])
