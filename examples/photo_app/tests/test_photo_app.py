"""The photo application's own tests, run against a real facepipe in process.

The ``rekognition`` fixture comes with facepipe (its pytest plugin): every boto3 Rekognition
client the application creates during a test is answered by a real facepipe, with the real
models, in this process (no server, port or network). The photos are the samples that ship
inside the insightface package.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pytest
from app import PhotoApp, Sighting
from PIL import Image, ImageOps


def sample_photos() -> Path:
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the sample photos ship in insightface: pip install --no-deps insightface==2.1")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "images"


@pytest.fixture()
def photos() -> Path:
    return sample_photos()


@pytest.fixture()
def app(rekognition: object, monkeypatch: pytest.MonkeyPatch) -> PhotoApp:
    """The application as it runs in production: it creates its own boto3 client."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")  # any region; no credentials needed
    photo_app = PhotoApp()
    photo_app.setup()
    return photo_app


def mirrored(path: Path) -> bytes:
    """The photo flipped left to right, as JPEG: a new photo of the same faces."""
    out = io.BytesIO()
    ImageOps.mirror(Image.open(path).convert("RGB")).save(out, format="JPEG", quality=92)
    return out.getvalue()


def test_every_face_of_a_group_photo_gets_its_own_face_id(app: PhotoApp, photos: Path) -> None:
    faces = app.add_photo(photos / "t1.jpg")
    assert len(faces) == 6 and len(set(faces)) == 6
    app.setup()  # idempotent


def test_an_enrolled_person_is_recognised_in_a_new_photo(app: PhotoApp, photos: Path) -> None:
    app.add_photo(photos / "t1.jpg")
    [portrait_face] = app.add_photo(photos / "Tom_Hanks_54745.png")
    assert app.enroll("tom", [portrait_face]) == [portrait_face]

    seen = app.who_is_this(mirrored(photos / "Tom_Hanks_54745.png"))
    assert isinstance(seen, Sighting) and seen.person == "tom"
    assert seen.similarity > 90
    assert app.who_is_this((photos / "t1.jpg").read_bytes()) is None  # he is not in the group photo
    assert app.who_is_this((photos / "mask_white.jpg").read_bytes()) is None  # no face at all
    assert app.photos_of("tom") == ["Tom_Hanks_54745.png"]
    assert app.people() == ["tom"]


def test_a_second_person_gets_their_own_faces(app: PhotoApp, photos: Path) -> None:
    group = app.add_photo(photos / "t1.jpg")
    [portrait_face] = app.add_photo(photos / "Tom_Hanks_54745.png")
    app.enroll("tom", [portrait_face])
    assert app.enroll("largest-in-group", [group[0]]) == [group[0]]
    assert app.enroll("tom", [group[0]]) == []  # a face belongs to one user only
    assert app.people() == ["largest-in-group", "tom"]
    assert app.photos_of("largest-in-group") == ["t1.jpg"]


def test_rekognition_errors_reach_the_application_as_boto3_raises_them(app: PhotoApp, tmp_path: Path) -> None:
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_bytes(b"these are not image bytes" * 10)
    with pytest.raises(app.client.exceptions.InvalidImageFormatException):
        app.add_photo(not_a_photo)
    with pytest.raises(app.client.exceptions.InvalidParameterException):
        app.enroll("not a valid user id!", ["11111111-1111-1111-1111-111111111111"])
