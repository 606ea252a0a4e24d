"""Image.S3Object: objects up to the S3 limit decode, and names the file system or S3 cannot hold
are InvalidS3ObjectException (never a 500), from a local bucket root and from a real S3 API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from pipeline.config import (
    DEFAULT_DECODE_BUDGET_BYTES,
    DEFAULT_DECODE_WAIT_SECONDS,
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_S3_IMAGE_BYTES,
    Settings,
)
from pipeline.errors import ImageTooLargeException, InvalidS3ObjectException, ThrottlingException
from pipeline.service import FacePipe
from pipeline.vision.image import DECODE_BUDGET
from tests.support.server import s3_bucket
from tests.support.synthetic_faces import DecodingEngine

BUCKET = "photos"
JPEG_SMALL = cv2.imencode(".jpg", np.full((120, 160, 3), 90, np.uint8))[1].tobytes()


def noisy_jpeg(min_bytes: int) -> bytes:
    """A JPEG of random noise (barely compressible) of at least ``min_bytes`` bytes."""
    side = int((min_bytes / 1.2) ** 0.5)
    pixels = np.random.default_rng(7).integers(0, 256, (side, side, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    assert min_bytes <= len(data) <= DEFAULT_MAX_S3_IMAGE_BYTES
    return data


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    return noisy_jpeg(DEFAULT_MAX_IMAGE_BYTES + (1 << 20))


@pytest.fixture()
def local_s3(tmp_path: Path, big_jpeg: bytes) -> Iterator[FacePipe]:
    (tmp_path / "s3" / BUCKET / "sub").mkdir(parents=True)
    (tmp_path / "s3" / BUCKET / "big.jpg").write_bytes(big_jpeg)
    (tmp_path / "s3" / "outside.jpg").write_bytes(big_jpeg)
    settings = Settings(data_dir=tmp_path / "home", cache_dir=tmp_path / "cache", s3_root=tmp_path / "s3")
    pipe = FacePipe(settings, engine=DecodingEngine())
    yield pipe
    pipe.close()


def s3_image(name: str) -> dict[str, Any]:
    return {"S3Object": {"Bucket": BUCKET, "Name": name}}


def test_s3_objects_over_the_bytes_limit_decode(local_s3: FacePipe, big_jpeg: bytes) -> None:
    assert local_s3.call("DetectFaces", {"Image": s3_image("big.jpg")}) == {"FaceDetails": []}
    with pytest.raises(ImageTooLargeException):
        local_s3.call("DetectFaces", {"Image": {"Bytes": big_jpeg}})


def test_s3_objects_over_the_s3_limit_are_refused_without_being_read_whole(tmp_path: Path) -> None:
    (tmp_path / BUCKET).mkdir()
    (tmp_path / BUCKET / "huge.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 4096)
    settings = Settings(data_dir=tmp_path / "home", s3_root=tmp_path, max_s3_image_bytes=1024)
    with pytest.raises(ImageTooLargeException, match="limit of 1024 bytes"):
        FacePipe(settings, engine=DecodingEngine()).call("DetectFaces", {"Image": s3_image("huge.jpg")})


@pytest.mark.parametrize(
    "name",
    [
        "big\0.jpg",
        "x" * 300,
        "sub/" + "y" * 300 + "/z.jpg",
        "../outside.jpg",
        "sub",
        "sub/../../outside.jpg",
        "missing.jpg",
    ],
    ids=["nul", "too-long", "too-long-part", "traversal", "directory", "traversal-2", "missing"],
)
def test_unreadable_s3_names_are_invalid_s3_object(local_s3: FacePipe, name: str) -> None:
    with pytest.raises(InvalidS3ObjectException) as caught:
        local_s3.call("DetectFaces", {"Image": s3_image(name)})
    assert "\0" not in caught.value.message and len(caught.value.message) < 400


@pytest.fixture(scope="module")
def s3_endpoint(big_jpeg: bytes) -> Iterator[str]:
    """A real S3 API (moto's server mode) on a loopback port, holding big.jpg."""
    with s3_bucket(BUCKET, {"big.jpg": big_jpeg}) as endpoint:
        yield endpoint


@pytest.mark.parametrize("name", ["big.jpg", "big\0.jpg", "x" * 1024, "nothing.jpg"])
def test_s3_endpoint_objects(
    s3_endpoint: str, tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "s3-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3-test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    settings = replace(Settings(data_dir=tmp_path / "home"), s3_endpoint_url=s3_endpoint)
    fp = FacePipe(settings, engine=DecodingEngine())
    if name == "big.jpg":
        assert fp.call("DetectFaces", {"Image": s3_image(name)}) == {"FaceDetails": []}
        return
    with pytest.raises(InvalidS3ObjectException) as caught:
        fp.call("DetectFaces", {"Image": s3_image(name)})
    assert "\0" not in caught.value.message


def test_a_decode_that_finds_no_room_in_the_budget_is_throttled(tmp_path: Path, big_jpeg: bytes) -> None:
    settings = Settings(data_dir=tmp_path / "home", decode_budget_bytes=1 << 20, decode_wait_seconds=0.2)
    fp = FacePipe(settings, engine=DecodingEngine())
    try:
        # another request's decode holds the whole budget
        with DECODE_BUDGET.reserve(1 << 30), pytest.raises(ThrottlingException, match="Try your call again"):
            fp.call("DetectFaces", {"Image": {"Bytes": JPEG_SMALL}})
        assert fp.call("DetectFaces", {"Image": {"Bytes": JPEG_SMALL}}) == {"FaceDetails": []}
    finally:
        DECODE_BUDGET.configure(DEFAULT_DECODE_BUDGET_BYTES, DEFAULT_DECODE_WAIT_SECONDS)
