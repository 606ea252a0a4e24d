"""Error messages speak AWS, never Python: no bytes literals, reprs, class names or object
addresses, whatever the client sends (images included)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline.config import Settings
from pipeline.errors import RekognitionError
from pipeline.service import FacePipe
from tests.support.synthetic_faces import DecodingEngine

PYTHON_REPRS = re.compile(r"b'|b\"|<class |object at 0x|<_io\.|Traceback|\\x[0-9a-f]{2}|\['|'\]")


def assert_no_python_repr(message: str) -> None:
    """The message holds no Python literal or repr."""
    assert not PYTHON_REPRS.search(message), message


def image_of(fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (120, 100), (90, 120, 150)).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


JPEG = image_of("JPEG")
BAD_IMAGES = {
    "empty": b"",
    "gif": image_of("GIF"),
    "webp": image_of("WEBP"),
    "jpeg-magic-junk": b"\xff\xd8\xff" + b"\0" * 64,
    "png-magic-junk": b"\x89PNG\r\n\x1a\n" + b"junk" * 16,
    "jpeg-truncated": JPEG[: len(JPEG) // 2] + b"\xff\xd9",
    "png-truncated": image_of("PNG")[:60],
    "jpeg-bad-exif": JPEG[:2] + b"\xff\xe1\x00\x10Exif\x00\x00II*\x00\xff\xff\xff\xff" + JPEG[2:],
    "text": "not an image",
}


@pytest.fixture()
def decoding_pipe(tmp_path: Path) -> Iterator[FacePipe]:
    pipe = FacePipe(
        Settings(data_dir=tmp_path / "home", cache_dir=tmp_path / "cache"), engine=DecodingEngine()
    )
    pipe.call("CreateCollection", {"CollectionId": "c"})
    yield pipe
    pipe.close()


def calls(data: Any) -> list[tuple[str, dict[str, Any]]]:
    image = {"Bytes": data}
    return [
        ("DetectFaces", {"Image": image}),
        ("IndexFaces", {"CollectionId": "c", "Image": image}),
        ("SearchFacesByImage", {"CollectionId": "c", "Image": image}),
        ("SearchUsersByImage", {"CollectionId": "c", "Image": image}),
        ("CompareFaces", {"SourceImage": image, "TargetImage": image}),
    ]


@pytest.mark.parametrize("kind", sorted(BAD_IMAGES))
def test_bad_images_get_aws_worded_errors(decoding_pipe: FacePipe, kind: str) -> None:
    for operation, params in calls(BAD_IMAGES[kind]):
        try:
            decoding_pipe.call(operation, params)
        except RekognitionError as err:
            assert err.code in ("InvalidImageFormatException", "InvalidParameterException"), (
                operation,
                err.code,
            )
            assert_no_python_repr(err.message)
            assert len(err.message) < 400
        else:
            assert kind == "jpeg-bad-exif", operation  # a damaged EXIF block alone does not spoil the pixels


@pytest.mark.parametrize(
    ("operation", "params"),
    [
        ("ListFaces", {"CollectionId": "c", "NextToken": "forged.token"}),
        ("ListUsers", {"CollectionId": "c", "NextToken": "not-a-token"}),
        ("DeleteFaces", {"CollectionId": "c", "FaceIds": [b"\x00"]}),
        ("CreateCollection", {"CollectionId": ["c"]}),
        ("CreateCollection", {"CollectionId": "c", "Tags": {"k": b"v"}}),
        ("SearchFaces", {"CollectionId": "c", "FaceId": 1.5}),
        ("DetectFaces", {"Image": {"Bytes": JPEG}, "Attributes": ["NOSE"]}),
        (
            "CompareFaces",
            {"SourceImage": {"Bytes": JPEG}, "TargetImage": {"Bytes": JPEG}, "QualityFilter": "X"},
        ),
    ],
)
def test_bad_parameters_get_aws_worded_errors(
    decoding_pipe: FacePipe, operation: str, params: dict[str, Any]
) -> None:
    with pytest.raises(RekognitionError) as caught:
        decoding_pipe.call(operation, params)
    assert_no_python_repr(caught.value.message)
