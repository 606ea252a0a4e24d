"""Load-time preparation of ONNX models so that ONNX Runtime runs them, and runs them fast.

Each transform takes and returns an ``onnx.ModelProto``; :func:`prepare_model` applies the ones a
manifest asks for, in a fixed order. ``PREPARATION_VERSION`` (pipeline.vision.model_cache, which
caches the prepared files without importing onnx) is part of the cache key of a prepared file:
bump it whenever any transform's output changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper, numpy_helper

from pipeline.vision.model_cache import PREPARATION_VERSION, TRANSFORMS, prepared_path, write_atomic

__all__ = ["PREPARATION_VERSION", "TRANSFORMS", "prepare_model", "prepared_path", "write_atomic"]


def _dequantize_blocked(
    quantized: npt.NDArray[np.generic],
    scale: npt.NDArray[np.float32],
    zero_point: npt.NDArray[np.generic] | None,
    axis: int,
    block_size: int,
) -> npt.NDArray[np.float32]:
    """DequantizeLinear evaluated in numpy: per-tensor, per-axis or blocked (``block_size`` > 0)."""
    q = quantized.astype(np.float32)
    zp = np.zeros_like(scale) if zero_point is None else zero_point.astype(np.float32)
    if scale.size == 1:
        return ((q - zp.reshape(())) * scale.reshape(())).astype(np.float32)
    axis = axis % q.ndim
    if block_size > 0:
        n = q.shape[axis]
        scale = np.repeat(scale, block_size, axis=axis).take(np.arange(n), axis=axis)
        zp = np.repeat(zp, block_size, axis=axis).take(np.arange(n), axis=axis)
        return ((q - zp) * scale).astype(np.float32)
    shape = [1] * q.ndim
    shape[axis] = -1
    return ((q - zp.reshape(shape)) * scale.reshape(shape)).astype(np.float32)


def fold_dequantize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Evaluate DequantizeLinear (and a following constant Reshape) on initializers once.

    The int8 weights become float32 initializers; the graph then holds plain float convolutions,
    which ONNX Runtime runs faster than dequantizing on every call, and the ``block_size``
    attribute that ONNX Runtime rejects on per-tensor scales disappears with the nodes.
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    removed: set[int] = set()
    new_inits: dict[str, npt.NDArray[np.float32]] = {}
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or not all(x in inits or x == "" for x in node.input):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        arrays = [numpy_helper.to_array(inits[x]) if x else None for x in node.input]
        quantized, scale = arrays[0], arrays[1]
        assert quantized is not None and scale is not None
        zero_point = arrays[2] if len(arrays) > 2 else None
        value = _dequantize_blocked(
            quantized, scale, zero_point, int(attrs.get("axis", 1)), int(attrs.get("block_size", 0))
        )
        name = node.output[0]
        removed.add(id(node))
        users = consumers.get(name, [])
        if (
            len(users) == 1
            and users[0].op_type == "Reshape"
            and users[0].input[0] == name
            and users[0].input[1] in inits
            and name not in outputs
        ):
            reshape = users[0]
            shape = numpy_helper.to_array(inits[reshape.input[1]]).astype(np.int64)
            value = value.reshape(shape)
            name = reshape.output[0]
            removed.add(id(reshape))
        new_inits[name] = value
    kept = [n for n in graph.node if id(n) not in removed]
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in new_inits.items())
    return _drop_unused_initializers(model)


def _drop_unused_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    used = {x for n in graph.node for x in n.input} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model


def drop_constant_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove graph inputs that no node reads or that are initializers (ORT would demand them)."""
    graph = model.graph
    used = {x for n in graph.node for x in n.input}
    inits = {t.name for t in graph.initializer}
    kept = [i for i in graph.input if i.name in used and i.name not in inits]
    del graph.input[:]
    graph.input.extend(kept)
    return _drop_unused_initializers(model)


def _set_dims(value: onnx.ValueInfoProto, names: dict[int, str]) -> None:
    dims = value.type.tensor_type.shape.dim
    for index, name in names.items():
        if index < len(dims):
            dims[index].ClearField("dim_value")
            dims[index].dim_param = name


def dynamic_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """Make axis 0 of every graph input and output symbolic ('N'), so any batch size runs."""
    for value in [*model.graph.input, *model.graph.output]:
        _set_dims(value, {0: "N"})
    del model.graph.value_info[:]
    return model


def dynamic_hw(model: onnx.ModelProto) -> onnx.ModelProto:
    """Make the image input's height and width symbolic and clear the outputs' fixed anchor counts."""
    for value in model.graph.input:
        _set_dims(value, {2: "H", 3: "W"})
    for value in model.graph.output:
        _set_dims(value, {1: "anchors"})
    del model.graph.value_info[:]
    return model


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _depthwise_conv_feeding(
    model: onnx.ModelProto, prelu: onnx.NodeProto, producers: dict[str, onnx.NodeProto], uses: dict[str, int]
) -> tuple[onnx.NodeProto, npt.NDArray[np.float32], npt.NDArray[np.float32]] | None:
    """The depthwise Conv whose output (through an optional inference BatchNormalization) is this
    PRelu's only input, with its weights and bias (BatchNormalization folded in); None otherwise."""
    inits = {t.name: t for t in model.graph.initializer}
    source = producers.get(prelu.input[0])
    scale = shift = None
    if source is not None and source.op_type == "BatchNormalization" and uses.get(prelu.input[0]) == 1:
        if len(source.input) != 5 or not all(x in inits for x in source.input[1:]):
            return None
        gamma, beta, mean, var = (
            numpy_helper.to_array(inits[x]).astype(np.float64) for x in source.input[1:]
        )
        eps = float(_attrs(source).get("epsilon", 1e-5))  # type: ignore[arg-type]
        scale = gamma / np.sqrt(var + eps)
        shift = beta - mean * scale
        bn_input = source.input[0]
        source = producers.get(bn_input)
        if uses.get(bn_input) != 1:
            return None
    elif uses.get(prelu.input[0]) != 1:
        return None
    if source is None or source.op_type != "Conv" or source.input[1] not in inits:
        return None
    weight = numpy_helper.to_array(inits[source.input[1]]).astype(np.float64)
    channels = weight.shape[0]
    if int(_attrs(source).get("group", 1)) != channels or weight.shape[1] != 1:  # type: ignore[call-overload]
        return None
    if len(source.input) > 2 and source.input[2]:
        if source.input[2] not in inits:
            return None
        bias = numpy_helper.to_array(inits[source.input[2]]).astype(np.float64)
    else:
        bias = np.zeros(channels)
    if scale is not None and shift is not None:
        weight = weight * scale.reshape(-1, 1, 1, 1)
        bias = bias * scale + shift
    return source, weight.astype(np.float32), bias.astype(np.float32)


def prelu_to_relu(model: onnx.ModelProto) -> onnx.ModelProto:
    """The float32 form of :func:`_rewrite_prelu` (per-channel Mul for a PRelu not after a
    depthwise convolution)."""
    return _rewrite_prelu(model, pointwise_as_conv=False)


def prelu_to_depthwise(model: onnx.ModelProto) -> onnx.ModelProto:
    """The form for int8 graphs: like :func:`prelu_to_relu`, but a PRelu that does not follow a
    depthwise convolution (and has every slope s <= 1) becomes Relu(DW1_(1-s)(x)) + DW1_s(x),
    DW1_k a 1x1 depthwise convolution with per-channel weight k. ONNX Runtime's int8 kernels run
    those as channels-last depthwise convolutions with per-channel weights, where the
    per-channel Mul would be a slow broadcasting QLinearMul with a per-tensor scale (measured on
    SFace: 38% of the int8 graph's time, and less accurate)."""
    return _rewrite_prelu(model, pointwise_as_conv=True)


def _rewrite_prelu(model: onnx.ModelProto, pointwise_as_conv: bool) -> onnx.ModelProto:
    """Rewrite every PRelu with constant per-channel slopes s into layout-aware ops (same outputs
    up to float rounding).

    ONNX Runtime's CPU layout optimizer keeps convolutions in its blocked NCHWc format only across
    layout-aware ops; PRelu is not one, so it would reorder the tensor around every convolution.

    * After a depthwise convolution D (BatchNormalization folded in) with every s <= 1:
      PRelu(D(x)) = Relu(D_(1-s)(x)) + D_s(x), where D_k scales D's weights and bias by k per
      channel ((1-s) * Relu(y) = Relu((1-s) * y) needs 1-s >= 0). Both are depthwise convolutions
      that ONNX Runtime fuses with the Relu and the Add, so the PRelu costs no extra pass over memory.
    * Otherwise: PRelu(x) = (1 - s) * Relu(x) + s * x.
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    for out in graph.output:
        uses[out.name] = uses.get(out.name, 0) + 1
    replaced: dict[int, list[onnx.NodeProto]] = {}
    dropped: set[int] = set()
    extra: list[onnx.TensorProto] = []
    for node in graph.node:
        if node.op_type != "PRelu" or node.input[1] not in inits:
            continue
        x, slope_name = node.input[0], node.input[1]
        slope = numpy_helper.to_array(inits[slope_name]).astype(np.float32)
        base = node.output[0]
        depthwise = _depthwise_conv_feeding(model, node, producers, uses)
        if depthwise is not None and slope.size == depthwise[1].shape[0] and float(slope.max()) <= 1.0:
            conv, weight, bias = depthwise
            per_channel = slope.reshape(-1).astype(np.float32)
            keep = (1.0 - per_channel).astype(np.float32)
            parts = []
            for tag, factor in (("keep", keep), ("slope", per_channel)):
                w_name, b_name = f"{base}__{tag}_w", f"{base}__{tag}_b"
                extra.append(
                    numpy_helper.from_array((weight * factor.reshape(-1, 1, 1, 1)).astype(np.float32), w_name)
                )
                extra.append(numpy_helper.from_array((bias * factor).astype(np.float32), b_name))
                parts.append(
                    helper.make_node(
                        "Conv",
                        [conv.input[0], w_name, b_name],
                        [f"{base}__{tag}"],
                        name=f"{base}__{tag}_conv",
                        **{a.name: helper.get_attribute_value(a) for a in conv.attribute},
                    )
                )
            parts.append(
                helper.make_node("Relu", [f"{base}__keep"], [f"{base}__pos"], name=f"{base}__relu_node")
            )
            parts.append(
                helper.make_node("Add", [f"{base}__slope", f"{base}__pos"], [base], name=f"{base}__add")
            )
            replaced[id(node)] = parts
            dropped.add(id(conv))
            if producers.get(x) is not conv:
                dropped.add(id(producers[x]))
            continue
        if pointwise_as_conv and slope.size > 1 and float(slope.max()) <= 1.0:
            per_channel = slope.reshape(-1).astype(np.float32)
            channels = per_channel.size
            parts = []
            for tag, factor in (("keep", 1.0 - per_channel), ("slope", per_channel)):
                w_name = f"{base}__{tag}_dw1"
                extra.append(
                    numpy_helper.from_array(factor.reshape(channels, 1, 1, 1).astype(np.float32), w_name)
                )
                parts.append(
                    helper.make_node(
                        "Conv",
                        [x, w_name],
                        [f"{base}__{tag}"],
                        name=f"{base}__{tag}_dw1_conv",
                        group=channels,
                        kernel_shape=[1, 1],
                    )
                )
            parts.append(
                helper.make_node("Relu", [f"{base}__keep"], [f"{base}__pos"], name=f"{base}__relu_node")
            )
            parts.append(
                helper.make_node("Add", [f"{base}__slope", f"{base}__pos"], [base], name=f"{base}__add")
            )
            replaced[id(node)] = parts
            continue
        if slope.ndim == 1 and slope.size > 1:
            slope = slope.reshape(-1, 1, 1)
        s_name, keep_name = base + "__slope", base + "__keep"
        extra.append(numpy_helper.from_array(slope, s_name))
        extra.append(numpy_helper.from_array((1.0 - slope).astype(np.float32), keep_name))
        relu, scaled_pos, scaled_x = base + "__relu", base + "__pos", base + "__neg"
        replaced[id(node)] = [
            helper.make_node("Relu", [x], [relu], name=base + "__relu_node"),
            helper.make_node("Mul", [relu, keep_name], [scaled_pos], name=base + "__mul_pos"),
            helper.make_node("Mul", [x, s_name], [scaled_x], name=base + "__mul_x"),
            helper.make_node("Add", [scaled_pos, scaled_x], [base], name=base + "__add"),
        ]
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if id(node) in dropped:
            continue
        nodes.extend(replaced.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(extra)
    return _drop_unused_initializers(model)


_BY_NAME = {
    "fold_dequantize": fold_dequantize,
    "drop_constant_inputs": drop_constant_inputs,
    "dynamic_batch": dynamic_batch,
    "dynamic_hw": dynamic_hw,
    "prelu_to_relu": prelu_to_relu,
    "prelu_to_depthwise": prelu_to_depthwise,
}


def prepare_model(model: onnx.ModelProto, transforms: Sequence[str]) -> onnx.ModelProto:
    """Apply the named transforms (a subset of TRANSFORMS) in TRANSFORMS order and check the result."""
    unknown = set(transforms) - set(TRANSFORMS)
    if unknown:
        raise ValueError(f"unknown model preparation step(s): {sorted(unknown)}; known: {TRANSFORMS}")
    if "prelu_to_relu" in transforms and "prelu_to_depthwise" in transforms:
        raise ValueError("prelu_to_relu and prelu_to_depthwise are alternatives; give one of them")
    for name in TRANSFORMS:
        if name in transforms:
            model = _BY_NAME[name](model)
    onnx.checker.check_model(model)
    return model
