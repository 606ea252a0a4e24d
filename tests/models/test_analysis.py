"""DetectFaces and CompareFaces on real photos, shaped as botocore's Rekognition model."""

from __future__ import annotations

import io
from pathlib import Path

import botocore.session
import cv2
import numpy as np
import pytest
from botocore.validate import ParamValidator
from PIL import Image

from pipeline.errors import InvalidImageFormatException, InvalidParameterException
from pipeline.service.analysis import compare_faces, detect_faces
from pipeline.vision.engine import FaceEngine

MODEL = botocore.session.get_session().get_service_model("rekognition")


def assert_output_shape(operation: str, body: dict) -> None:
    """The body validates as the operation's output shape (members, types, enums)."""
    report = ParamValidator().validate(body, MODEL.operation_model(operation).output_shape)
    assert not report.has_errors(), report.generate_report()


def blank_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (200, 200), (128, 128, 128)).save(buf, format="PNG")
    return buf.getvalue()


def test_detect_faces_group_photo(engine: FaceEngine, sample_images: Path) -> None:
    body = detect_faces(engine, (sample_images / "t1.jpg").read_bytes(), ["ALL"])
    assert_output_shape("DetectFaces", body)
    details = body["FaceDetails"]
    assert len(details) == 6
    assert set(details[0]) == {"BoundingBox", "Landmarks", "Pose", "Quality", "Confidence"}
    assert [lm["Type"] for lm in details[0]["Landmarks"]] == [
        "eyeLeft",
        "eyeRight",
        "nose",
        "mouthLeft",
        "mouthRight",
    ]
    assert detect_faces(engine, blank_png(), ["DEFAULT"]) == {"FaceDetails": []}


def test_detect_faces_errors(engine: FaceEngine, sample_images: Path) -> None:
    with pytest.raises(InvalidParameterException, match="Attributes"):
        detect_faces(engine, (sample_images / "t1.jpg").read_bytes(), ["AGE"])
    with pytest.raises(InvalidImageFormatException):
        detect_faces(engine, b"GIF89a not really", ["DEFAULT"])


def test_compare_faces_finds_the_same_face_in_a_group(engine: FaceEngine, sample_images: Path) -> None:
    group = engine.decode((sample_images / "t1.jpg").read_bytes())
    third = engine.analyze(group, embed=False)[2].bounding_box
    x, y = int(third.left * group.width), int(third.top * group.height)
    w, h = int(third.width * group.width), int(third.height * group.height)
    crop = group.bgr[max(0, y - h) : y + 2 * h, max(0, x - w) : x + 2 * w]
    ok, source = cv2.imencode(".png", crop)
    assert ok
    body = compare_faces(engine, source.tobytes(), (sample_images / "t1.jpg").read_bytes())
    assert_output_shape("CompareFaces", body)
    assert len(body["FaceMatches"]) == 1 and len(body["UnmatchedFaces"]) == 5
    match = body["FaceMatches"][0]
    assert match["Similarity"] >= 99
    assert match["Face"]["BoundingBox"]["Left"] == pytest.approx(third.left, abs=0.01)
    assert all(
        set(face) == {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality"}
        for face in body["UnmatchedFaces"]
    )
    everyone = compare_faces(
        engine, source.tobytes(), (sample_images / "t1.jpg").read_bytes(), similarity_threshold=0
    )
    similarities = [m["Similarity"] for m in everyone["FaceMatches"]]
    assert len(similarities) == 6 and similarities == sorted(similarities, reverse=True)
    # the closest stranger (same photo, same light) stays well below the default 80: under 70,
    # where about 1 in 450 pairs of strangers scores higher (models/calibration.md)
    assert similarities[1] < 70


def test_compare_faces_errors(engine: FaceEngine, sample_images: Path) -> None:
    photo = (sample_images / "t1.jpg").read_bytes()
    with pytest.raises(InvalidParameterException, match="source image"):
        compare_faces(engine, blank_png(), photo)
    with pytest.raises(InvalidParameterException, match="target image"):
        compare_faces(engine, photo, blank_png())
    with pytest.raises(InvalidParameterException, match="SimilarityThreshold"):
        compare_faces(engine, photo, photo, similarity_threshold=101)
    with pytest.raises(InvalidParameterException, match="QualityFilter"):
        compare_faces(engine, photo, photo, quality_filter="SOME")


def test_compare_faces_quality_filter_drops_unusable_target_faces(
    engine: FaceEngine, sample_images: Path
) -> None:
    photo = engine.decode((sample_images / "t1.jpg").read_bytes())
    faces = engine.analyze(photo, embed=False)
    dark = photo.bgr.copy()
    box = faces[1].bounding_box
    x, y = int(box.left * photo.width), int(box.top * photo.height)
    w, h = int(box.width * photo.width), int(box.height * photo.height)
    dark[y : y + h, x : x + w] = (dark[y : y + h, x : x + w] * 0.04).astype(np.uint8)
    _ok, target = cv2.imencode(".png", dark)
    unfiltered = compare_faces(engine, (sample_images / "t1.jpg").read_bytes(), target.tobytes())
    filtered = compare_faces(
        engine, (sample_images / "t1.jpg").read_bytes(), target.tobytes(), quality_filter="HIGH"
    )
    count = lambda body: len(body["FaceMatches"]) + len(body["UnmatchedFaces"])  # noqa: E731
    assert count(filtered) < count(unfiltered)


@pytest.mark.shared_data
def test_conformance_pairs(engine: FaceEngine, shared_faces: Path) -> None:
    celeb = shared_faces / "celeb5"
    mindy = sorted((celeb / "mindy_kaling").iterdir())
    elton = sorted((celeb / "elton_john").iterdir())
    for other in mindy[1:4]:
        body = compare_faces(engine, mindy[0].read_bytes(), other.read_bytes())
        assert body["FaceMatches"] and body["FaceMatches"][0]["Similarity"] >= 80, other.name
    body = compare_faces(engine, elton[0].read_bytes(), mindy[0].read_bytes(), similarity_threshold=0)
    assert body["FaceMatches"][0]["Similarity"] < 75
