"""Requests cost what their answer needs: only faces a response can carry are embedded, detection
work is bounded, and large images are decoded reduced with the same faces found."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from pipeline.config import Settings
from pipeline.service import FacePipe
from pipeline.vision import detect
from pipeline.vision.engine import FaceEngine

FACE_IN_T1 = (462, 265, 113, 151)
"""x, y, width, height in pixels of one face of insightface's t1.jpg (as YuNet finds it)."""


def crowd(sample_images: Path, grid: int = 32, cell: int = 64) -> bytes:
    """A JPEG of grid x grid copies of one face of t1.jpg: about a thousand small faces."""
    photo = cv2.imread(str(sample_images / "t1.jpg"))
    x, y, w, h = FACE_IN_T1
    margin, centre = int(0.1 * h), x + w // 2
    crop = photo[y - margin : y + h + margin, centre - h // 2 - margin : centre + h // 2 + margin]
    tile = cv2.resize(crop, (cell, cell), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", np.tile(tile, (grid, grid, 1)), [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()


@pytest.fixture()
def embedded(engine: FaceEngine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of crops of each embedder call the engine makes during the test."""
    calls: list[int] = []
    embedder = engine.pack.embedder
    real = embedder.embed

    def counting(crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        calls.append(len(crops))
        return real(crops)

    monkeypatch.setattr(embedder, "embed", counting)
    return calls


@pytest.fixture()
def model_pipe(engine: FaceEngine, tmp_path: Path) -> Iterator[FacePipe]:
    pipe = FacePipe(Settings(data_dir=tmp_path / "home", cache_dir=tmp_path / "cache"), engine=engine)
    pipe.call("CreateCollection", {"CollectionId": "c"})
    yield pipe
    pipe.close()


def test_a_thousand_faces_detected_but_only_returnable_ones_embedded(
    model_pipe: FacePipe, sample_images: Path, embedded: list[int]
) -> None:
    image = {"Bytes": crowd(sample_images)}
    details = model_pipe.call("DetectFaces", {"Image": image})["FaceDetails"]
    assert len(details) == 100 and embedded == []  # DetectFaces embeds nothing
    one = model_pipe.call(
        "IndexFaces", {"CollectionId": "c", "Image": image, "MaxFaces": 1, "ExternalImageId": "a"}
    )
    assert len(one["FaceRecords"]) == 1 and sum(embedded) == 1
    assert len(one["UnindexedFaces"]) == 99
    exceeding = [face for face in one["UnindexedFaces"] if face["Reasons"] == ["EXCEEDS_MAX_FACES"]]
    assert len(exceeding) > 80 and all("FaceDetail" in face for face in exceeding)
    embedded.clear()
    three = model_pipe.call(
        "IndexFaces", {"CollectionId": "c", "Image": image, "MaxFaces": 3, "ExternalImageId": "b"}
    )
    assert len(three["FaceRecords"]) == 3 and sum(embedded) == 3
    embedded.clear()
    found = model_pipe.call(
        "SearchFacesByImage", {"CollectionId": "c", "Image": image, "FaceMatchThreshold": 0}
    )
    assert sum(embedded) == 1  # only the searched (largest usable) face
    assert found["FaceMatches"]


def test_index_faces_keeps_its_choice_of_faces(
    model_pipe: FacePipe, sample_images: Path, embedded: list[int]
) -> None:
    """Embedding only the indexed faces changes nothing in the answer (t1.jpg: six faces)."""
    image = {"Bytes": (sample_images / "t1.jpg").read_bytes()}
    every = model_pipe.call("DetectFaces", {"Image": image})["FaceDetails"]
    two = model_pipe.call(
        "IndexFaces", {"CollectionId": "c", "Image": image, "MaxFaces": 2, "QualityFilter": "NONE"}
    )
    assert sum(embedded) == 2
    assert [r["FaceDetail"]["BoundingBox"] for r in two["FaceRecords"]] == [
        d["BoundingBox"] for d in every[:2]
    ]
    assert [u["Reasons"] for u in two["UnindexedFaces"]] == [["EXCEEDS_MAX_FACES"]] * 4
    again = model_pipe.call(
        "IndexFaces", {"CollectionId": "c", "Image": image, "MaxFaces": 2, "QualityFilter": "NONE"}
    )
    assert [r["Face"]["FaceId"] for r in again["FaceRecords"]] == [
        r["Face"]["FaceId"] for r in two["FaceRecords"]
    ]


def test_detection_candidates_are_capped_before_nms() -> None:
    rng = np.random.default_rng(3)
    count = 20_000
    corners = rng.uniform(0, 600, (count, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + 12], axis=1)
    scores = rng.uniform(0.6, 1.0, count).astype(np.float32)
    landmarks = np.repeat(corners[:, None, :], 5, axis=1)
    seen: list[int] = []
    real = detect.nms

    def counting(b: npt.NDArray[np.float32], s: npt.NDArray[np.float32], iou: float) -> npt.NDArray[np.intp]:
        seen.append(len(s))
        return real(b, s, iou)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(detect, "nms", counting)
        found = detect._finish(boxes, scores, landmarks, 1.0, 0.3, (640, 640))
    assert seen == [detect.MAX_CANDIDATES]
    assert float(found.scores.min()) >= float(np.sort(scores)[-detect.MAX_CANDIDATES])  # the best kept


def test_a_large_photo_is_decoded_reduced_with_the_same_faces(
    model_pipe: FacePipe, sample_images: Path, engine: FaceEngine
) -> None:
    photo = cv2.imread(str(sample_images / "t1.jpg"))
    large = cv2.resize(photo, None, fx=5, fy=5, interpolation=cv2.INTER_CUBIC)  # 6400 x 4430
    data = cv2.imencode(".jpg", large, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
    decoded = engine.decode(data, max_bytes=15 << 20)
    assert decoded.reduction == 2
    original = engine.analyze(engine.decode((sample_images / "t1.jpg").read_bytes()))
    reduced = engine.analyze(decoded)
    assert len(reduced) == len(original) == 6
    for a, b in zip(original, reduced, strict=True):
        assert a.bounding_box.left == pytest.approx(b.bounding_box.left, abs=0.01)
        assert a.bounding_box.top == pytest.approx(b.bounding_box.top, abs=0.01)
        assert a.bounding_box.width == pytest.approx(b.bounding_box.width, abs=0.01)
        assert a.embedding is not None and b.embedding is not None
        assert float(a.embedding @ b.embedding) > 0.9
