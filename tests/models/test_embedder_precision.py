"""The embedder's precision: int8 chosen by measuring, cached per machine, forced by a setting."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from pipeline.config import Settings
from pipeline.errors import InternalServerError
from pipeline.vision import precision
from pipeline.vision.engine import FaceEngine, get_engine
from pipeline.vision.packs import read_manifest, verified_file
from pipeline.vision.prepare import prepared_path


def embedder_files(cache: Path) -> tuple[Path, Path, str, list[str]]:
    """(source model, prepared float32 model, source sha256, prepare steps) of the default embedder."""
    manifest = read_manifest("default")
    spec = manifest["embedder"]
    source = verified_file(
        manifest["source"]["package"], manifest["source"]["version"], spec["path"], spec["sha256"]
    )
    return (
        source,
        prepared_path(source, spec["sha256"], spec["prepare"], cache),
        spec["sha256"],
        spec["prepare"],
    )


def no_faces_expected() -> npt.NDArray[np.uint8]:
    raise AssertionError("the cached choice should have been reused, not measured again")


def sample_crops(engine: FaceEngine, sample_images: Path) -> npt.NDArray[np.uint8]:
    """Aligned crops of every face in the sample photos (no jitter): the engine's own alignment."""
    from pipeline.vision.align import align_face

    crops = []
    for path in sorted(sample_images.iterdir()):
        if path.suffix in (".jpg", ".png"):
            bgr = engine.decode(path.read_bytes()).bgr
            crops += [align_face(bgr, lm) for lm in engine.pack.detector.detect(bgr).landmarks]
    return np.stack(crops)


def test_auto_choice_is_measured_once_and_cached(engine: FaceEngine, model_cache: Path) -> None:
    source, float_path, sha, steps = embedder_files(model_cache)
    record_file = precision.choice_path(source, sha, steps, model_cache)
    record = json.loads(record_file.read_text())
    assert record["auto"] == engine.pack.embedder_variant == engine.stream_pack.embedder_variant
    assert record["machine"] == precision.cpu_fingerprint()
    assert set(record["ms_per_face_one_thread"]) == {"float32", *record["files"]}
    assert record["calibration_faces"] >= 14
    chosen = record["auto"]
    if chosen != "float32":  # what auto picks must pass the gate and be the fastest that does
        assert record["mean_cosine_to_float32"][chosen] >= precision.GATE_MEAN_COSINE
    gate = precision.GATE_MEAN_COSINE
    passing = ["float32", *(k for k, v in record["mean_cosine_to_float32"].items() if v >= gate)]
    assert chosen == min(passing, key=lambda k: record["ms_per_face_one_thread"][k])
    # a second load reads the file: no faces asked for, no measurement
    again = precision.choose_embedder(
        "auto", float_path, source, sha, steps, model_cache, ["CPUExecutionProvider"], no_faces_expected
    )
    assert again.variant == chosen and again.path.is_file()
    assert json.loads(record_file.read_text()) == record


def test_forcing_float32_and_int8(engine: FaceEngine, model_cache: Path, sample_images: Path) -> None:
    source, float_path, sha, steps = embedder_files(model_cache)
    as_float = get_engine(
        Settings(cache_dir=model_cache, provider="cpu", threads=2, embedder_precision="float32")
    )
    as_int8 = get_engine(
        Settings(cache_dir=model_cache, provider="cpu", threads=2, embedder_precision="int8")
    )
    assert as_float.pack.embedder_variant == as_float.stream_pack.embedder_variant == "float32"
    assert as_int8.pack.embedder_variant.startswith("int8")
    record = json.loads(precision.choice_path(source, sha, steps, model_cache).read_text())
    assert as_int8.pack.embedder_variant == record["int8"]
    assert Path(as_float.pack.embedder.session._model_path) == float_path  # type: ignore[attr-defined]
    assert Path(as_int8.pack.embedder.session._model_path).name == record["files"][record["int8"]]  # type: ignore[attr-defined]
    # int8 embeddings of real faces agree with float32's
    crops = sample_crops(engine, sample_images)
    cosines = np.sum(as_int8.embed_aligned(crops) * as_float.embed_aligned(crops), axis=1)
    assert len(crops) >= 7 and cosines.mean() >= 0.99 and cosines.min() >= 0.97
    with pytest.raises(InternalServerError, match="FACEPIPE_EMBEDDER_PRECISION"):
        get_engine(Settings(cache_dir=model_cache, provider="cpu", threads=2, embedder_precision="int4"))


def test_int8_agrees_with_float32_on_the_shared_aligned_faces(model_cache: Path, shared_faces: Path) -> None:
    as_float = get_engine(
        Settings(cache_dir=model_cache, provider="cpu", threads=2, embedder_precision="float32")
    )
    as_int8 = get_engine(
        Settings(cache_dir=model_cache, provider="cpu", threads=2, embedder_precision="int8")
    )
    files = sorted((shared_faces / "aligned").glob("*/*"))[::4]
    crops = np.stack(
        [c for c in (cv2.imread(str(f)) for f in files) if c is not None and c.shape == (112, 112, 3)]
    )
    cosines = np.sum(as_int8.embed_aligned(crops) * as_float.embed_aligned(crops), axis=1)
    assert len(crops) >= 150 and cosines.mean() >= 0.99 and cosines.min() >= 0.97


def test_new_preparation_version_measures_again(
    engine: FaceEngine, model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, float_path, sha, steps = embedder_files(model_cache)
    current = precision.choice_path(source, sha, steps, model_cache)
    variant = precision.INT8_VARIANTS[0]
    old_int8 = precision.int8_path(source, sha, steps, model_cache, variant)
    monkeypatch.setattr(precision, "PREPARATION_VERSION", precision.PREPARATION_VERSION + 1)
    assert precision.choice_path(source, sha, steps, model_cache) != current
    assert precision.int8_path(source, sha, steps, model_cache, variant) != old_int8
    asked: list[bool] = []

    def no_faces() -> npt.NDArray[np.uint8]:
        asked.append(True)
        return np.zeros((0, 112, 112, 3), np.uint8)

    choice = precision.choose_embedder(
        "auto", float_path, source, sha, steps, model_cache, ["CPUExecutionProvider"], no_faces
    )
    # the old choice is not reused: the new version measures again (here with no faces: float32)
    assert asked == [True] and choice.variant == "float32" and "no calibration faces" in choice.reason


def test_auto_applies_the_current_gate_to_a_stored_choice(tmp_path: Path) -> None:
    """A choice file measured under an older, laxer gate does not make auto pick int8 now."""
    source, float_path = tmp_path / "model.onnx", tmp_path / "model.prepared.onnx"
    float_path.write_bytes(b"float")
    steps = ["fold_dequantize"]
    int8_file = precision.int8_path(source, "ab" * 32, steps, tmp_path, precision.INT8_VARIANTS[0])
    int8_file.parent.mkdir(parents=True)
    int8_file.write_bytes(b"int8")
    record = {
        "auto": "int8-qop",
        "int8": "int8-qop",
        "ms_per_face_one_thread": {"float32": 10.0, "int8-qop": 4.0},
        "mean_cosine_to_float32": {"int8-qop": 0.995},
        "files": {"int8-qop": int8_file.name},
        "machine": precision.cpu_fingerprint(),
    }
    record_file = precision.choice_path(source, "ab" * 32, steps, tmp_path)
    record_file.write_text(json.dumps(record))
    cpu = ["CPUExecutionProvider"]
    auto = precision.choose_embedder(
        "auto", float_path, source, "ab" * 32, steps, tmp_path, cpu, no_faces_expected
    )
    assert auto.variant == "float32" and auto.path == float_path
    forced = precision.choose_embedder(
        "int8", float_path, source, "ab" * 32, steps, tmp_path, cpu, no_faces_expected
    )
    assert forced.variant == "int8-qop" and forced.path == int8_file
    record["mean_cosine_to_float32"] = {"int8-qop": 0.999}
    record_file.write_text(json.dumps(record))
    again = precision.choose_embedder(
        "auto", float_path, source, "ab" * 32, steps, tmp_path, cpu, no_faces_expected
    )
    assert again.variant == "int8-qop"


def test_int8_files_are_keyed_by_onnxruntime_version_and_vnni(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An int8 graph quantized (and bias-corrected) under another ONNX Runtime or on a CPU with
    other int8 kernels is not reused."""
    source, variant, steps = tmp_path / "model.onnx", precision.INT8_VARIANTS[0], ["fold_dequantize"]
    paths = set()
    for version, flags in (("1.0.0", set()), ("1.0.0", {"avx512_vnni"}), ("9.9.9", {"avx512_vnni"})):
        monkeypatch.setattr(precision.ort, "__version__", version)
        monkeypatch.setattr(precision, "_cpu_flags", lambda flags=flags: flags)
        paths.add(precision.int8_path(source, "ab" * 32, steps, tmp_path, variant))
    assert len(paths) == 3


@pytest.mark.parametrize(
    "stored",
    [{}, {"files": {}}, {"auto": "int8-qop", "files": {}}, [], {"files": {}, "ms_per_face_one_thread": 3}],
)
def test_a_choice_file_without_the_keys_it_needs_is_measured_again(tmp_path: Path, stored: object) -> None:
    """A choice file that parses but lacks what this version reads is a missing record, not a
    traceback at engine load."""
    source, float_path = tmp_path / "model.onnx", tmp_path / "model.prepared.onnx"
    float_path.write_bytes(b"float")
    steps = ["fold_dequantize"]
    record_file = precision.choice_path(source, "ab" * 32, steps, tmp_path)
    record_file.parent.mkdir(parents=True)
    record_file.write_text(json.dumps(stored))
    asked: list[bool] = []

    def no_faces() -> npt.NDArray[np.uint8]:
        asked.append(True)
        return np.zeros((0, 112, 112, 3), np.uint8)

    for wanted in ("auto", "int8"):
        choice = precision.choose_embedder(
            wanted, float_path, source, "ab" * 32, steps, tmp_path, ["CPUExecutionProvider"], no_faces
        )
        assert choice.variant == "float32" and "no calibration faces" in choice.reason
    assert asked == [True, True]


def test_the_choice_is_measured_on_the_cpu_whatever_the_provider(
    engine: FaceEngine, model_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """int8 forced on CUDA: the trial (documented as a CPU trial, in the CPU's choice file) runs
    CPU sessions, not the engine's providers."""
    source, float_path, sha, steps = embedder_files(model_cache)
    used: list[list[str]] = []
    real_session = precision._session

    def spy(path: Path, providers: list[str]) -> object:
        used.append(list(providers))
        return real_session(path, providers)

    def float_as_int8(
        source: Path, float_path: Path, transforms: object, crops: object, targets: dict[object, Path]
    ) -> None:
        for target in targets.values():  # the build is not what this test is about
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(float_path.read_bytes())

    monkeypatch.setattr(precision, "_session", spy)
    monkeypatch.setattr(precision, "build_int8_variants", float_as_int8)
    crops = np.full((4, 112, 112, 3), 128, np.uint8)
    choice = precision.choose_embedder(
        "int8",
        float_path,
        source,
        sha,
        steps,
        tmp_path,
        ["CUDAExecutionProvider", "CPUExecutionProvider"],
        lambda: crops,
    )
    assert choice.variant.startswith("int8") and used
    assert all(providers == ["CPUExecutionProvider"] for providers in used)
