"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) as an ONNX graph.

The weights ship in the PyPI package ``face-recognition-models`` (public domain). dlib itself is
not needed: :func:`read_dlib_resnet` reads dlib's serialization format in pure Python/numpy and
:func:`resnet_onnx` writes the network as ONNX, so it runs in ONNX Runtime like the other models.

The network is ``anet_type`` of dlib's ``dnn_face_recognition_ex.cpp`` (ResNet-34 with a few
layers removed and half the filters: 29 convolutions): ``input_rgb_image_sized<150>`` -> con 32 7x7/2 -> affine -> relu -> max_pool 3x3/2
-> residual levels of 32 (x3), 64 (x4), 128 (x3) and 256 (x4) channels, each level after the
first starting with a stride-2 block whose shortcut is a 2x2/2 average pool -> global average pool
-> fc 128 (no bias). dlib adds two tensors of different shapes by zero-padding the smaller one at
the end of each axis (channels, rows, columns), which the graph does with Pad.

dlib's serialization (dlib/serialize.h, dlib/dnn/core.h, layers.h, tensor.h):

* integers: one byte (bit 7: negative, low 4 bits: the count of bytes that follow), then the
  magnitude little-endian; bool: one byte '0' or '1'; string: its length, then the bytes;
  float/double: an integer mantissa and an integer exponent (value = mantissa * 2**exponent).
* tensor: version 2, num_samples, k, nr, nc, then the values as 4-byte little-endian floats;
  alias_tensor: version 1, num_samples, k, nr, nc (a view into the layer's ``params``).
* ``add_loss_layer``: version, the loss details, the subnetwork. ``add_layer``: version (2, or 3
  for the layer on the input), the subnetwork, the layer details, three flags and three tensors
  (x_grad, cached output, params_grad; version 3: grad_final, then its sample expansion factor);
  tag and skip layers: version 1 and the subnetwork, nothing else. So the file holds the
  wrappers' versions outermost first, the input layer, then each layer's details innermost first.

Graph input: N x 3 x 150 x 150 float RGB 0-255, a chip aligned as dlib's ``get_face_chip(img,
shape, 150, 0.25)`` (pipeline.vision.dlib_align); output: N x 128 descriptors (dlib compares them
by Euclidean distance, 0.6 its threshold; callers L2-normalise them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pipeline.vision.model_cache import write_atomic

if TYPE_CHECKING:
    import onnx

F32 = npt.NDArray[np.float32]

CHIP_SIZE = 150
"""Side of the network's input chip, in pixels."""

DESCRIPTOR_DIM = 128
"""Length of a dlib face descriptor."""

CONVERSION_VERSION = 1
"""Version of this converter's output: part of the converted file's cache key."""

OPSET = 17


class DlibFormatError(ValueError):
    """The file is not the dlib network this converter knows."""


class _Reader:
    """Sequential reader of dlib-serialized values."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def integer(self) -> int:
        if self.pos >= len(self.data):
            raise DlibFormatError("unexpected end of file")
        head = self.data[self.pos]
        size = head & 0x0F
        if head & 0x70 or size > 8:
            raise DlibFormatError(f"bad integer header 0x{head:02x} at byte {self.pos}")
        magnitude = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -magnitude if head & 0x80 else magnitude

    def string(self) -> str:
        size = self.integer()
        if not 0 <= size <= 256:
            raise DlibFormatError(f"implausible string length {size} at byte {self.pos}")
        text = self.data[self.pos : self.pos + size].decode("latin-1")
        self.pos += size
        return text

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        return float(mantissa) * 2.0**exponent

    def flag(self) -> bool:
        value = self.data[self.pos : self.pos + 1]
        self.pos += 1
        if value not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {value!r} at byte {self.pos - 1}")
        return value == b"1"

    def tensor(self) -> F32:
        version = self.integer()
        if version != 2:
            raise DlibFormatError(f"tensor version {version} (expected 2) at byte {self.pos}")
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        end = self.pos + 4 * count
        if end > len(self.data):
            raise DlibFormatError("tensor runs past the end of the file")
        values = np.frombuffer(self.data, "<f4", count, self.pos).astype(np.float32)
        self.pos = end
        return values.reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        version = self.integer()
        if version != 1:
            raise DlibFormatError(f"alias_tensor version {version} (expected 1)")
        n, k, r, c = (self.integer() for _ in range(4))
        return (n, k, r, c)

    def expect(self, *names: str) -> str:
        name = self.string()
        if name not in names:
            raise DlibFormatError(f"found layer {name!r} where {' or '.join(names)} was expected")
        return name


# ---------------------------------------------------------------------------------------------
# The architecture, outermost layer first, as in the file.


def _block(channels: int, stride: int) -> list[tuple[str, dict[str, int]]]:
    """dlib's ``block``: affine<con<N,3,3,1,1,relu<affine<con<N,3,3,stride,stride,SUBNET>>>>>."""
    return [
        ("affine", {}),
        ("con", {"filters": channels, "size": 3, "stride": 1}),
        ("relu", {}),
        ("affine", {}),
        ("con", {"filters": channels, "size": 3, "stride": stride}),
    ]


def _ares(channels: int) -> list[tuple[str, dict[str, int]]]:
    """relu<add_prev1<block<N,1,tag1<SUBNET>>>>."""
    return [("relu", {}), ("add_prev", {"tag": 1}), *_block(channels, 1), ("tag", {"tag": 1})]


def _ares_down(channels: int) -> list[tuple[str, dict[str, int]]]:
    """relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,2,tag1<SUBNET>>>>>>>."""
    return [
        ("relu", {}),
        ("add_prev", {"tag": 2}),
        ("avg_pool", {"size": 2, "stride": 2}),
        ("skip", {"tag": 1}),
        ("tag", {"tag": 2}),
        *_block(channels, 2),
        ("tag", {"tag": 1}),
    ]


def architecture() -> list[tuple[str, dict[str, int]]]:
    """``anet_type`` without its loss and input layers, outermost layer first."""
    layers: list[tuple[str, dict[str, int]]] = [("fc", {"outputs": DESCRIPTOR_DIM}), ("avg_pool_all", {})]
    layers += _ares_down(256)  # alevel0
    layers += _ares(256) + _ares(256) + _ares_down(256)  # alevel1
    layers += _ares(128) + _ares(128) + _ares_down(128)  # alevel2
    layers += _ares(64) + _ares(64) + _ares(64) + _ares_down(64)  # alevel3
    layers += _ares(32) + _ares(32) + _ares(32)  # alevel4
    layers += [
        ("max_pool", {"size": 3, "stride": 2}),
        ("relu", {}),
        ("affine", {}),
        ("con", {"filters": 32, "size": 7, "stride": 2}),
    ]
    return layers


@dataclass
class Layer:
    """One layer as read from the file: its kind, architecture settings and weights."""

    kind: str
    settings: dict[str, int]
    weights: dict[str, F32] = field(default_factory=dict)


@dataclass
class DlibResnet:
    """The network read from a .dat file: layers innermost first, and the input's channel means."""

    layers: list[Layer]
    channel_means: tuple[float, float, float]
    """avg_red, avg_green, avg_blue: the input layer computes (pixel - mean) / 256."""
    chip_size: int


def _read_con(reader: _Reader, layer: Layer) -> None:
    reader.expect("con_4", "con_5")
    params = reader.tensor().ravel()
    filters = reader.integer()
    rows, cols = reader.integer(), reader.integer()
    stride_y, stride_x = reader.integer(), reader.integer()
    pad_y, pad_x = reader.integer(), reader.integer()
    filter_shape = reader.alias()
    bias_shape = reader.alias()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        reader.real()
    expected = layer.settings
    if (filters, rows, cols, stride_y, stride_x) != (
        expected["filters"],
        expected["size"],
        expected["size"],
        expected["stride"],
        expected["stride"],
    ):
        raise DlibFormatError(
            f"con {filters} {rows}x{cols}/{stride_y} where the architecture has "
            f"{expected['filters']} {expected['size']}x{expected['size']}/{expected['stride']}"
        )
    n_weights = int(np.prod(filter_shape))
    if n_weights + int(np.prod(bias_shape)) != params.size or filter_shape[0] != filters:
        raise DlibFormatError("con parameters do not match their filter and bias shapes")
    layer.settings = {**expected, "pad_y": pad_y, "pad_x": pad_x}
    layer.weights = {
        "weight": params[:n_weights].reshape(filter_shape),
        "bias": params[n_weights:].reshape(filters),
    }


def _read_affine(reader: _Reader, layer: Layer) -> None:
    reader.expect("affine_")
    params = reader.tensor().ravel()
    gamma_shape = reader.alias()
    beta_shape = reader.alias()
    reader.integer()  # mode: CONV_MODE (per channel)
    n = int(np.prod(gamma_shape))
    if n + int(np.prod(beta_shape)) != params.size:
        raise DlibFormatError("affine parameters do not match gamma and beta")
    layer.weights = {"gamma": params[:n].copy(), "beta": params[n:].copy()}


def _read_pool(reader: _Reader, layer: Layer, name: str) -> None:
    reader.expect(name)
    rows, cols, stride_y, stride_x, pad_y, pad_x = (reader.integer() for _ in range(6))
    if layer.kind == "avg_pool_all":
        if (rows, cols) != (0, 0):
            raise DlibFormatError(f"global average pool expected, found a {rows}x{cols} pool")
    elif (rows, cols, stride_y, stride_x) != (layer.settings["size"],) * 2 + (layer.settings["stride"],) * 2:
        raise DlibFormatError(f"{name} {rows}x{cols}/{stride_y} does not match the architecture")
    layer.settings = {**layer.settings, "pad_y": pad_y, "pad_x": pad_x}


def _read_fc(reader: _Reader, layer: Layer) -> None:
    reader.expect("fc_2")
    outputs, inputs = reader.integer(), reader.integer()
    params = reader.tensor().ravel()
    weight_shape = reader.alias()
    reader.alias()  # biases (unused: fc_no_bias)
    bias_mode = reader.integer()
    for _ in range(4):
        reader.real()
    if outputs != layer.settings["outputs"] or bias_mode != 1:  # FC_NO_BIAS
        raise DlibFormatError(f"fc with {outputs} outputs and bias mode {bias_mode}: expected 128, no bias")
    n = int(np.prod(weight_shape))
    layer.weights = {"weight": params[:n].reshape(inputs, outputs)}


def read_dlib_resnet(data: bytes) -> DlibResnet:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat``; DlibFormatError for anything else."""
    reader = _Reader(data)
    reader.integer()  # add_loss_layer version
    reader.expect("loss_metric_2", "loss_metric_")
    reader.real()  # margin
    reader.real()  # distance threshold
    arch = architecture()
    for kind, _ in arch[:-1]:
        version = reader.integer()
        wanted = 1 if kind in ("tag", "skip") else 2
        if version != wanted:
            raise DlibFormatError(f"layer wrapper version {version} for {kind} (expected {wanted})")
    if reader.integer() != 3:
        raise DlibFormatError("the layer on the input has an unknown wrapper version")
    reader.expect("input_rgb_image_sized")
    means = (reader.real(), reader.real(), reader.real())
    rows, cols = reader.integer(), reader.integer()
    if rows != cols:
        raise DlibFormatError(f"input chip {rows}x{cols} is not square")
    layers: list[Layer] = []
    for position, (kind, settings) in enumerate(reversed(arch)):
        layer = Layer(kind, dict(settings))
        if kind in ("tag", "skip"):
            layers.append(layer)
            continue
        if kind == "con":
            _read_con(reader, layer)
        elif kind == "affine":
            _read_affine(reader, layer)
        elif kind == "relu":
            reader.expect("relu_")
        elif kind == "max_pool":
            _read_pool(reader, layer, "max_pool_2")
        elif kind in ("avg_pool", "avg_pool_all"):
            _read_pool(reader, layer, "avg_pool_2")
        elif kind == "add_prev":
            reader.expect("add_prev_")
        elif kind == "fc":
            _read_fc(reader, layer)
        for _ in range(3):  # setup called, gradient input stale, output and gradient disabled
            reader.flag()
        reader.tensor()  # x_grad
        reader.tensor()  # cached output
        reader.tensor()  # params_grad (grad_final in the wrapper on the input layer)
        if position == 0:
            reader.integer()  # the wrapper on the input layer: its sample expansion factor
        layers.append(layer)
    if reader.pos != len(data):
        raise DlibFormatError(f"{len(data) - reader.pos} bytes left after the network")
    return DlibResnet(layers, means, rows)


# ---------------------------------------------------------------------------------------------
# ONNX


class _GraphBuilder:
    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper = helper
        self.numpy_helper = numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, value: npt.NDArray[Any], stem: str) -> str:
        name = self.name(stem)
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], stem: str, **attrs: Any) -> str:
        out = self.name(stem)
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _out_size(size: int, kernel: int, stride: int, pad: int) -> int:
    return 1 + (size + 2 * pad - kernel) // stride


def _padded_to(b: _GraphBuilder, tensor: str, shape: tuple[int, int, int], to: tuple[int, int, int]) -> str:
    """Zero-pad (C, H, W) at the end of each axis up to ``to`` (dlib's add of unequal tensors)."""
    if shape == to:
        return tensor
    pads = np.array([0, 0, 0, 0, 0, to[0] - shape[0], to[1] - shape[1], to[2] - shape[2]], np.int64)
    return b.node("Pad", [tensor, b.const(pads, "pads")], "pad", mode="constant")


def _affines_folded(layers: list[Layer]) -> list[Layer]:
    """The layers with each affine that directly follows a con folded into the con's weights
    (gamma * (W x + b) + beta = (gamma W) x + (gamma b + beta)); any other affine is kept."""
    out: list[Layer] = []
    for layer in layers:
        if layer.kind == "affine" and out and out[-1].kind == "con":
            con = out[-1]
            gamma, beta = layer.weights["gamma"], layer.weights["beta"]
            weight = con.weights["weight"] * gamma.reshape(-1, 1, 1, 1)
            bias = con.weights["bias"] * gamma + beta
            out[-1] = Layer(
                "con", con.settings, {"weight": weight.astype(np.float32), "bias": bias.astype(np.float32)}
            )
            continue
        out.append(layer)
    return out


def resnet_onnx(net: DlibResnet) -> onnx.ModelProto:
    """The network as an ONNX model: input ``chip`` N x 3 x S x S float RGB 0-255, output
    ``descriptor`` N x 128."""
    from onnx import TensorProto, helper

    b = _GraphBuilder()
    size = net.chip_size
    means = np.array(net.channel_means, np.float32).reshape(1, 3, 1, 1)
    x = b.node("Sub", ["chip", b.const(means, "channel_means")], "centred")
    x = b.node("Mul", [x, b.const(np.array(1.0 / 256.0, np.float32), "scale")], "scaled")
    shape = (3, size, size)
    tags: dict[int, tuple[str, tuple[int, int, int]]] = {}
    for layer in _affines_folded(net.layers):
        s = layer.settings
        if layer.kind == "con":
            w, bias = layer.weights["weight"], layer.weights["bias"]
            x = b.node(
                "Conv",
                [x, b.const(w, "conv_w"), b.const(bias, "conv_b")],
                "conv",
                kernel_shape=[s["size"], s["size"]],
                strides=[s["stride"], s["stride"]],
                pads=[s["pad_y"], s["pad_x"], s["pad_y"], s["pad_x"]],
            )
            shape = (
                s["filters"],
                _out_size(shape[1], s["size"], s["stride"], s["pad_y"]),
                _out_size(shape[2], s["size"], s["stride"], s["pad_x"]),
            )
        elif layer.kind == "affine":
            gamma = layer.weights["gamma"].reshape(1, -1, 1, 1)
            beta = layer.weights["beta"].reshape(1, -1, 1, 1)
            x = b.node("Mul", [x, b.const(gamma, "gamma")], "affine_mul")
            x = b.node("Add", [x, b.const(beta, "beta")], "affine_add")
        elif layer.kind == "relu":
            x = b.node("Relu", [x], "relu")
        elif layer.kind in ("max_pool", "avg_pool"):
            op = "MaxPool" if layer.kind == "max_pool" else "AveragePool"
            x = b.node(
                op,
                [x],
                layer.kind,
                kernel_shape=[s["size"], s["size"]],
                strides=[s["stride"], s["stride"]],
                pads=[s["pad_y"], s["pad_x"], s["pad_y"], s["pad_x"]],
            )
            shape = (
                shape[0],
                _out_size(shape[1], s["size"], s["stride"], s["pad_y"]),
                _out_size(shape[2], s["size"], s["stride"], s["pad_x"]),
            )
        elif layer.kind == "tag":
            tags[s["tag"]] = (x, shape)
        elif layer.kind == "skip":
            x, shape = tags[s["tag"]]
        elif layer.kind == "add_prev":
            other, other_shape = tags[s["tag"]]
            to = (
                max(shape[0], other_shape[0]),
                max(shape[1], other_shape[1]),
                max(shape[2], other_shape[2]),
            )
            x = b.node(
                "Add", [_padded_to(b, x, shape, to), _padded_to(b, other, other_shape, to)], "residual"
            )
            shape = to
        elif layer.kind == "avg_pool_all":
            x = b.node("GlobalAveragePool", [x], "global_pool")
            x = b.node("Flatten", [x], "flat", axis=1)
            shape = (shape[0], 1, 1)
        elif layer.kind == "fc":
            weight = layer.weights["weight"]
            if weight.shape[0] != shape[0]:
                raise DlibFormatError(f"fc takes {weight.shape[0]} inputs; the network gives {shape[0]}")
            x = b.node("MatMul", [x, b.const(weight, "fc_w")], "fc")
        else:  # pragma: no cover - architecture() lists only the kinds above
            raise DlibFormatError(f"unknown layer kind {layer.kind}")
    b.nodes.append(helper.make_node("Identity", [x], ["descriptor"], name="descriptor"))
    graph = helper.make_graph(
        b.nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info("chip", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("descriptor", TensorProto.FLOAT, ["batch", DESCRIPTOR_DIM])],
        b.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="facepipe dlib_convert"
    )
    model.ir_version = 8
    return model


def converted_path(source: Path, source_sha256: str, cache_dir: Path) -> Path:
    """The ONNX file converted from ``source`` (a verified .dat), created atomically when absent.

    Keyed by the source digest and CONVERSION_VERSION, like the other prepared models.
    """
    target = cache_dir / "models" / f"{source.stem}.{source_sha256[:16]}.dlib{CONVERSION_VERSION}.onnx"
    if target.is_file():
        return target
    model = resnet_onnx(read_dlib_resnet(source.read_bytes()))
    write_atomic(target, model.SerializeToString())
    return target
