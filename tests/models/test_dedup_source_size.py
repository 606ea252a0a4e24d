"""IndexFaces' duplicate-face key on an image decoded reduced: it uses the file's own size."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from pipeline.config import Settings
from pipeline.service import FacePipe
from pipeline.service.faces import dedup_key


@pytest.fixture(scope="module")
def model_pipe(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[FacePipe]:
    home = tmp_path_factory.mktemp("dedup")
    pipe = FacePipe(Settings(data_dir=home, cache_dir=model_cache, provider="cpu", threads=2))
    pipe.call("CreateCollection", {"CollectionId": "c"})
    yield pipe
    pipe.close()


def test_a_6000x4000_jpeg_indexed_twice_keeps_its_faces_and_full_size_key(
    model_pipe: FacePipe, sample_images: Path
) -> None:
    """Reduced decoding (2x for 6000 px) must not change the key: an image indexed at full size
    before and again now must match its earlier faces instead of adding duplicates."""
    t1 = cv2.imread(str(sample_images / "t1.jpg"))
    big = cv2.resize(t1, (6000, 4000), interpolation=cv2.INTER_CUBIC)
    data = bytes(cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 85])[1])
    params = {"CollectionId": "c", "Image": {"Bytes": data}, "ExternalImageId": "big", "MaxFaces": 2}
    first = [r["Face"]["FaceId"] for r in model_pipe.call("IndexFaces", params)["FaceRecords"]]
    second = [r["Face"]["FaceId"] for r in model_pipe.call("IndexFaces", params)["FaceRecords"]]
    assert len(first) == 2 and second == first
    image = model_pipe.engine.decode(data)
    assert image.reduction == 2 and (image.source_width, image.source_height) == (6000, 4000)
    faces = model_pipe.engine.analyze(image, embed=False)
    with model_pipe.store.read() as tx:
        coll = tx.collection("c")
        found = {
            row.face_id
            for face in faces
            for row, _ in tx.faces_with_dedup_key(coll, dedup_key("big", 6000, 4000, face))
        }
    assert found == set(first)  # the keys are those of the full-size image
