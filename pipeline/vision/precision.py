"""Embedder precision: the prepared float32 graph or a calibrated int8 one, chosen by measuring.

``Settings.embedder_precision`` (``FACEPIPE_EMBEDDER_PRECISION``):

* ``float32``: the prepared float32 graph (pipeline.vision.prepare).
* ``int8``: the fastest int8 variant measured on this CPU, whatever the accuracy gate said.
* ``auto`` (default): on the CPU provider, the fastest of float32 and the int8 variants that pass
  the accuracy gate (GATE_MEAN_COSINE), measured on this CPU; float32 on CUDA.

The int8 variants are built once from the source model (``prelu_to_depthwise`` in place of
``prelu_to_relu``, then ONNX Runtime's ``quant_pre_process`` and ``quantize_static``): weights
int8 per output channel, activations uint8 with ranges calibrated (min-max) on aligned faces
from the sample photos that ship in the installed insightface package, mirrored and jittered; the
first layers (input scaling, the first full convolution, the first two depthwise + pointwise
blocks at the highest resolution, where 8 bits cost the most accuracy and little time) stay
float32. Variants: operator format (QLinearConv, ``int8-qop``), QDQ format
(``int8-qdq``), and on CPUs without VNNI, where the u8s8 kernels can saturate, weights on 7 bits
(``int8-qop-rr``).

The gate: mean cosine of each variant's embeddings to float32's on the calibration faces >=
GATE_MEAN_COSINE, run with this CPU's kernels. The timed trial runs every candidate on one
intra-op thread (the batch streams' setting), interleaved, a few hundred milliseconds in all.
Gate and timings are measured on the CPU provider whatever the engine's provider (the choice is
a CPU trial; ``auto`` on CUDA takes float32 without one), and go into a choice file beside the
prepared models, keyed by the source sha256, PREPARATION_VERSION and a fingerprint of the CPU
(model name, SIMD flags) and ONNX Runtime version, so each machine measures once and a new
preparation version measures again. The int8 files are keyed by the ONNX Runtime version and
whether the CPU has VNNI too: quantization and the bias correction depend on both.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from pipeline.errors import InternalServerError
from pipeline.vision.align import ARCFACE_TEMPLATE, CROP_SIZE, align_face, similarity_transform
from pipeline.vision.detect import Detector
from pipeline.vision.model_cache import PREPARATION_VERSION, TRANSFORMS, write_atomic
from pipeline.vision.providers import CPU, session_options
from pipeline.vision.samples import find_sample_photos

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "float32", "int8")
"""Accepted values of Settings.embedder_precision."""

FLOAT32 = "float32"

GATE_MEAN_COSINE = 0.998
"""Least mean cosine of an int8 variant's embeddings to float32's on the calibration faces for
``auto`` to choose it. Not 0.99: the int8 graph reaches 0.994-0.996 (calibration faces, and the
shared labeled faces), and there the verification figures moved by 0.3-0.6 point (true accepts
at 1 false accept in 1,000 strangers, all pairs of the shared labeled faces), beyond the 0.1
point that auto may cost. ``int8`` forced runs regardless (with a warning below 0.99).

What that cost is (benchmarks/bench_embedder_precision.py, AMD EPYC Zen 4): the float32
embeddings with isotropic noise of int8's mean cosine (0.996) move the same figures as much
(true accepts at 1e-3 -0.18 +- 0.15 point, false rejects at 80 +0.32 +- 0.11), and at 0.9992
still by 0.05-0.25 point: the loss is the size of the error, not where it falls. Quantizing one
layer group at a time (``--layers``) costs 0.0002-0.0004 of mean cosine for each one beyond the
float32 stem, activation rounding dominating (int8 weights alone: 0.00004), so no short list of
float32 layers lifts the whole graph near 0.9995; entropy or percentile ranges, calibration on
275 shared faces, per-channel range equalization and dynamic quantization measured no better."""

FORCED_WARNING_COSINE = 0.99
"""Below this mean cosine a forced int8 embedder logs a warning."""

TRIAL_BATCH = 2
"""Faces per timed run of the load-time trial."""

TRIAL_ROUNDS = 3
"""Timed runs per candidate (interleaved; the fastest run counts)."""

JITTERED_COPIES = 2
"""Jittered copies of each calibration face (a small rotation, scale, shift, contrast change)."""

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
"""CPU flags of int8 dot-product instructions, which accumulate u8 x s8 products without saturating."""

FINGERPRINT_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_bf16",
    *VNNI_FLAGS,
)
"""CPU flags that change which ONNX Runtime kernels run."""


@dataclass(frozen=True)
class Int8Variant:
    """One way to quantize: ONNX Runtime's operator (QLinearConv) or QDQ format, 7-bit weights or not."""

    name: str
    quant_format: str
    reduce_range: bool


INT8_VARIANTS = (
    Int8Variant("int8-qop", "QOperator", False),
    Int8Variant("int8-qdq", "QDQ", False),
    Int8Variant("int8-qop-rr", "QOperator", True),
)
"""Every int8 variant; ``int8-qop-rr`` is built only on CPUs without VNNI."""


@dataclass(frozen=True)
class EmbedderChoice:
    """The embedder file to load and why: ``variant`` is 'float32' or an Int8Variant name."""

    path: Path
    variant: str
    reason: str


def check_precision(precision: str) -> None:
    """Raise InternalServerError unless ``precision`` is one of PRECISIONS."""
    if precision not in PRECISIONS:
        raise InternalServerError(
            f"embedder precision (FACEPIPE_EMBEDDER_PRECISION) must be one of {', '.join(PRECISIONS)}; "
            f"got {precision!r}"
        )


def _cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_fingerprint() -> dict[str, Any]:
    """What makes a measurement valid on this machine: CPU model, the kernel-relevant SIMD flags,
    ONNX Runtime's version."""
    flags = _cpu_flags()
    return {
        "cpu": _cpu_model(),
        "flags": [f for f in FINGERPRINT_FLAGS if f in flags],
        "onnxruntime": ort.__version__,
    }


def has_vnni() -> bool:
    """True when the CPU has an int8 dot-product instruction (AVX512-VNNI, AVX-VNNI or AMX)."""
    return bool(_cpu_flags() & set(VNNI_FLAGS))


def _key(source_sha256: str, transforms: Sequence[str]) -> str:
    steps = ",".join(name for name in TRANSFORMS if name in transforms)
    return f"{source_sha256[:16]}.prep{PREPARATION_VERSION}-{hashlib.sha256(steps.encode()).hexdigest()[:8]}"


def choice_path(source: Path, source_sha256: str, transforms: Sequence[str], cache_dir: Path) -> Path:
    """The choice file of this model, preparation and machine (see the module docstring)."""
    fingerprint = hashlib.sha256(json.dumps(cpu_fingerprint(), sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir / "models" / f"{source.stem}.{_key(source_sha256, transforms)}.choice-{fingerprint}.json"


def int8_path(
    source: Path, source_sha256: str, transforms: Sequence[str], cache_dir: Path, variant: Int8Variant
) -> Path:
    """Where the int8 variant of the prepared model lives in the cache: keyed by the source, the
    preparation, ONNX Runtime's version and whether this CPU has VNNI (quantize_static's output and
    the bias correction, measured with this CPU's int8 kernels, depend on them)."""
    kernels = f"ort{ort.__version__}-{'vnni' if has_vnni() else 'novnni'}"
    return (
        cache_dir
        / "models"
        / f"{source.stem}.{_key(source_sha256, transforms)}.{kernels}.{variant.name}.onnx"
    )


# ----------------------------------------------------------------------------- calibration faces


def _jittered(
    bgr: npt.NDArray[np.uint8], landmarks: npt.NDArray[np.float32], rng: np.random.Generator
) -> Any:
    """An aligned crop under a small random similarity (+-6 degrees, +-5% scale, +-3 px) and a
    contrast/brightness change: faces as a detector's landmarks and a camera's exposure vary."""
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE)
    angle, scale = np.deg2rad(rng.uniform(-6, 6)), rng.uniform(0.95, 1.05)
    turn = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.array([CROP_SIZE / 2, CROP_SIZE / 2])
    shift = centre - turn @ centre + rng.uniform(-3, 3, 2)
    jittered = np.hstack([turn @ matrix[:, :2], (turn @ matrix[:, 2] + shift)[:, None]])
    crop = cv2.warpAffine(bgr, jittered, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR, borderValue=0.0)
    crop = crop.astype(np.float32) * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20)
    return np.clip(crop, 0, 255).astype(np.uint8)


def calibration_faces(detector: Detector, folder: Path | None = None) -> npt.NDArray[np.uint8]:
    """Aligned 112x112 BGR crops of every face in the sample photos and in their mirror images,
    each with JITTERED_COPIES jittered copies (a fixed seed: the same crops on every machine).
    Empty (0, 112, 112, 3) when the photos are not installed."""
    folder = folder if folder is not None else find_sample_photos()
    crops: list[npt.NDArray[np.uint8]] = []
    rng = np.random.default_rng(20261201)
    for path in sorted(folder.iterdir()) if folder is not None else []:
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        read = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if read is None:
            continue
        image = np.asarray(read, dtype=np.uint8)
        for bgr in (image, np.ascontiguousarray(image[:, ::-1])):
            for landmarks in detector.detect(bgr).landmarks:
                crops.append(align_face(bgr, landmarks))
                crops += [_jittered(bgr, landmarks, rng) for _ in range(JITTERED_COPIES)]
    if not crops:
        return np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8)
    return np.stack(crops)


def _blob(crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Crops as SFace's input: N x 3 x 112 x 112 RGB float 0-255 (the graph normalises)."""
    return np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32))


def _embed(
    session: ort.InferenceSession, crops: npt.NDArray[np.uint8], batch: int = 8
) -> npt.NDArray[np.float32]:
    name = session.get_inputs()[0].name
    out = [session.run(None, {name: _blob(crops[i : i + batch])})[0] for i in range(0, len(crops), batch)]
    vectors = np.concatenate(out).astype(np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


# ----------------------------------------------------------------------------- building int8 graphs


FLOAT_POINTWISE_LAYERS = 2
"""Pointwise convolutions (with everything before them) kept in float32: measured on SFace, the
first layers lose the most to 8 bits (mean cosine to float32 on real aligned faces 0.9935 with
only the stem in float32, 0.9957 with the first two pointwise blocks too)."""


def _stem_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes kept in float32: everything before the first depthwise convolution that
    follows the FLOAT_POINTWISE_LAYERS-th pointwise (1x1, ungrouped) one: the input scaling, the
    first full convolution and the first blocks at the highest resolution."""
    inits = {t.name: t for t in model.graph.initializer}
    names, pointwise = [], 0
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1] in inits:
            dims = list(inits[node.input[1]].dims)
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if group == 1 and dims[2:] == [1, 1]:
                pointwise += 1
            elif group > 1 and dims[2:] != [1, 1] and pointwise >= FLOAT_POINTWISE_LAYERS:
                break
        names.append(node.name)
    return names


def _with_output_correction(model: onnx.ModelProto, correction: npt.NDArray[np.float32]) -> onnx.ModelProto:
    """The model with ``correction`` subtracted from its (first) output."""
    from onnx import helper, numpy_helper

    output = model.graph.output[0].name
    for node in model.graph.node:
        for index, name in enumerate(node.output):
            if name == output:
                node.output[index] = output + "__int8"
    model.graph.initializer.append(
        numpy_helper.from_array(correction.reshape(1, -1), "int8_output_correction")
    )
    model.graph.node.append(
        helper.make_node(
            "Sub", [output + "__int8", "int8_output_correction"], [output], name="int8_output_correction"
        )
    )
    return model


def _raw_outputs(model: Path | bytes, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """The network's outputs before L2 normalisation, on one thread."""
    session = ort.InferenceSession(
        str(model) if isinstance(model, Path) else model, session_options(1), providers=[CPU]
    )
    name = session.get_inputs()[0].name
    return np.concatenate(
        [session.run(None, {name: _blob(crops[i : i + 8])})[0] for i in range(0, len(crops), 8)]
    ).astype(np.float32)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Drop the root logger's warnings for the block: ONNX Runtime's quantization tools log their
    notes (e.g. on BatchNormalization weights) through it, which would reach the user's terminal."""

    def errors_only(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR

    root = logging.getLogger()
    root.addFilter(errors_only)
    try:
        yield
    finally:
        root.removeFilter(errors_only)


def build_int8_variants(
    source: Path,
    float_path: Path,
    transforms: Sequence[str],
    crops: npt.NDArray[np.uint8],
    targets: dict[Int8Variant, Path],
) -> None:
    """Quantize the source model into each target file (see the module docstring); the
    activation ranges are calibrated once on ``crops`` and shared by the variants.

    Bias correction: each variant's mean output error against the float32 graph on ``crops``
    (before L2 normalisation) is subtracted from its output. Without it int8 raises every cosine
    a little (a shared error direction): measured on the shared labeled faces, the stranger pairs
    above Similarity 80 went from 0.098% to 0.123%; with it to 0.102%."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from pipeline.vision.prepare import prepare_model

    steps = [("prelu_to_depthwise" if name == "prelu_to_relu" else name) for name in transforms]
    model = prepare_model(onnx.load(str(source)), steps)
    input_name = model.graph.input[0].name

    class Reader(CalibrationDataReader):
        """Calibration batches of 8 faces."""

        def __init__(self) -> None:
            self.batches = iter([_blob(crops[i : i + 8]) for i in range(0, len(crops), 8)])

        def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
            blob = next(self.batches, None)
            return None if blob is None else {input_name: blob}

    can_cache = "calibration_cache_path" in inspect.signature(quantize_static).parameters
    with tempfile.TemporaryDirectory(prefix="facepipe-int8-") as tmp, _quiet_root_logger():
        float_file, pre_file = Path(tmp) / "float.onnx", Path(tmp) / "pre.onnx"
        onnx.save(model, str(float_file))
        quant_pre_process(str(float_file), str(pre_file), skip_symbolic_shape=True)
        stem = _stem_nodes(onnx.load(str(pre_file)))
        reference = _raw_outputs(float_path, crops)
        ranges = Path(tmp) / "ranges.json"
        for variant, target in targets.items():
            out = Path(tmp) / f"{variant.name}.onnx"
            extra: dict[str, Any] = {"calibration_cache_path": str(ranges)} if can_cache else {}
            reader = Reader() if not (can_cache and ranges.is_file()) else None
            quantize_static(
                str(pre_file),
                str(out),
                reader,
                quant_format=getattr(QuantFormat, variant.quant_format),
                per_channel=True,
                reduce_range=variant.reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=stem,
                **extra,
            )
            quantized = onnx.load(str(out))
            error = (_raw_outputs(out, crops) - reference).mean(axis=0)
            write_atomic(target, _with_output_correction(quantized, error).SerializeToString())


# ----------------------------------------------------------------------------- choosing


def _session(path: Path, providers: list[str]) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), session_options(1), providers=providers)


def timed_trial(sessions: dict[str, ort.InferenceSession], crops: npt.NDArray[np.uint8]) -> dict[str, float]:
    """Milliseconds per face of each session on TRIAL_BATCH faces: one warm-up run each, then
    TRIAL_ROUNDS rounds over all of them (interleaved, so all see the same load), fastest run."""
    blob = _blob(crops[:TRIAL_BATCH])
    feeds = {name: {s.get_inputs()[0].name: blob} for name, s in sessions.items()}
    for name, session in sessions.items():
        session.run(None, feeds[name])
    best = dict.fromkeys(sessions, float("inf"))
    for _ in range(TRIAL_ROUNDS):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, feeds[name])
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: 1000.0 * seconds / len(blob) for name, seconds in best.items()}


def measure_choice(
    float_path: Path,
    source: Path,
    source_sha256: str,
    transforms: Sequence[str],
    cache_dir: Path,
    crops: npt.NDArray[np.uint8],
) -> dict[str, Any]:
    """Build the int8 variants (when not cached), gate them and time them against float32 on this
    CPU (CPU provider sessions, whatever provider the engine runs on); the choice file's content."""
    variants = [v for v in INT8_VARIANTS if not v.reduce_range or not has_vnni()]
    targets = {v: int8_path(source, source_sha256, transforms, cache_dir, v) for v in variants}
    missing = {v: p for v, p in targets.items() if not p.is_file()}
    started = time.perf_counter()
    if missing:
        log.info("building the int8 embedder (%s), once per preparation", ", ".join(v.name for v in missing))
        build_int8_variants(source, float_path, transforms, crops, missing)
    built_s = time.perf_counter() - started
    sessions = {FLOAT32: _session(float_path, [CPU])}
    sessions.update({v.name: _session(p, [CPU]) for v, p in targets.items()})
    reference = _embed(sessions[FLOAT32], crops)
    gate = {
        name: float(np.mean(np.sum(_embed(session, crops) * reference, axis=1)))
        for name, session in sessions.items()
        if name != FLOAT32
    }
    ms_per_face = timed_trial(sessions, crops)
    record: dict[str, Any] = {
        "ms_per_face_one_thread": {k: round(v, 3) for k, v in ms_per_face.items()},
        "mean_cosine_to_float32": {k: round(v, 5) for k, v in gate.items()},
        "gate_mean_cosine": GATE_MEAN_COSINE,
        "calibration_faces": len(crops),
        "build_seconds": round(built_s, 1),
        "files": {v.name: p.name for v, p in targets.items()},
        "machine": cpu_fingerprint(),
        "preparation_version": PREPARATION_VERSION,
    }
    record["auto"] = _auto_variant(record)
    record["int8"] = min(gate, key=lambda name: ms_per_face[name])
    return record


def _auto_variant(record: dict[str, Any]) -> str:
    """What ``auto`` takes from a choice file's measurements under the current gate: the fastest
    of float32 and the variants whose mean cosine to float32 reaches GATE_MEAN_COSINE."""
    times: dict[str, float] = record["ms_per_face_one_thread"]
    cosines: dict[str, float] = record["mean_cosine_to_float32"]
    passing = [FLOAT32, *(name for name, cosine in cosines.items() if cosine >= GATE_MEAN_COSINE)]
    return min(passing, key=lambda name: times[name])


def choose_embedder(
    precision: str,
    float_path: Path,
    source: Path,
    source_sha256: str,
    transforms: Sequence[str],
    cache_dir: Path,
    providers: list[str],
    faces: Callable[[], npt.NDArray[np.uint8]],
) -> EmbedderChoice:
    """The embedder file for ``precision`` (see the module docstring). ``faces()`` gives the
    calibration faces; it is called only when this machine has no choice file yet."""
    check_precision(precision)
    if precision == FLOAT32:
        return EmbedderChoice(float_path, FLOAT32, "float32 asked for")
    if precision == "auto" and providers[0] != CPU:
        return EmbedderChoice(float_path, FLOAT32, f"auto on {providers[0]}: float32")
    record_file = choice_path(source, source_sha256, transforms, cache_dir)
    if record_file.is_file():
        try:
            record = json.loads(record_file.read_text(encoding="utf-8"))
            files = record.get("files", {}).values()
            if all((record_file.parent / str(f)).is_file() for f in files):
                return _choice_from_record(precision, record, record_file, float_path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # unreadable, or without the keys this version reads: measure again
    crops = faces()
    if len(crops) == 0:
        why = "no calibration faces (the insightface package's sample photos are not installed)"
        log.warning("int8 embedder unavailable: %s; using float32", why)
        return EmbedderChoice(float_path, FLOAT32, why)
    record = measure_choice(float_path, source, source_sha256, transforms, cache_dir, crops)
    write_atomic(record_file, (json.dumps(record, indent=2) + "\n").encode())
    return _choice_from_record(precision, record, record_file, float_path)


def _choice_from_record(
    precision: str, record: dict[str, Any], record_file: Path, float_path: Path
) -> EmbedderChoice:
    """The embedder a choice file's measurements give for ``precision`` ('auto' or 'int8');
    KeyError/TypeError when the record lacks what this version reads."""
    variant = str(record[precision]) if precision == "int8" else _auto_variant(record)
    times = record["ms_per_face_one_thread"]
    reason = (
        f"{precision}: {variant} ({times[variant]:.2f} ms/face on one thread; float32 {times[FLOAT32]:.2f}; "
        f"measured on {record['machine']['cpu']})"
    )
    if variant == FLOAT32:
        return EmbedderChoice(float_path, FLOAT32, reason)
    cosine = float(record["mean_cosine_to_float32"][variant])
    path = record_file.parent / str(record["files"][variant])
    if cosine < FORCED_WARNING_COSINE:
        log.warning(
            "int8 embedder %s forced although its mean cosine to float32 is %.4f (< %.2f)",
            variant,
            cosine,
            FORCED_WARNING_COSINE,
        )
    return EmbedderChoice(path, variant, reason)
