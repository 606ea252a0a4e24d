"""The confidence paths on real photos with the real engine (labeled photos from ../shared)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import botocore.session
import cv2
import numpy as np
import pytest
from botocore.validate import ParamValidator

from pipeline import errors
from pipeline.config import Settings
from pipeline.service import FacePipe
from pipeline.service.faces import AnalyzedImage, index_analyzed_images

MODEL = botocore.session.get_session().get_service_model("rekognition")


@pytest.fixture(scope="module")
def real_fp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FacePipe]:
    home = tmp_path_factory.mktemp("real")
    pipe = FacePipe(Settings.from_env(data_dir=home))
    pipe.call("CreateCollection", {"CollectionId": "c"})
    yield pipe
    pipe.close()


def photos(shared_faces: Path, person: str, count: int) -> list[Path]:
    return sorted((shared_faces / "celeb5" / person).iterdir())[:count]


def index(fp: FacePipe, path: Path) -> str:
    out = fp.call(
        "IndexFaces",
        {
            "CollectionId": "c",
            "Image": {"Bytes": path.read_bytes()},
            "ExternalImageId": path.stem[:200],
            "MaxFaces": 1,
        },
    )
    face_id: str = out["FaceRecords"][0]["Face"]["FaceId"]
    return face_id


@pytest.mark.shared_data
def test_same_person_associates_and_stranger_is_low_confidence(real_fp: FacePipe, shared_faces: Path) -> None:
    mindy = photos(shared_faces, "mindy_kaling", 5)
    elton = photos(shared_faces, "elton_john", 2)
    a = [index(real_fp, p) for p in mindy]
    b = [index(real_fp, p) for p in elton]
    real_fp.call("CreateUser", {"CollectionId": "c", "UserId": "mindy"})
    real_fp.call("AssociateFaces", {"CollectionId": "c", "UserId": "mindy", "FaceIds": a[:1]})
    out = real_fp.call("AssociateFaces", {"CollectionId": "c", "UserId": "mindy", "FaceIds": [*a[1:4], b[0]]})
    assert sorted(f["FaceId"] for f in out["AssociatedFaces"]) == sorted(a[1:4])
    (low,) = out["UnsuccessfulFaceAssociations"]
    assert (
        low["FaceId"] == b[0] and low["Reasons"] == ["LOW_MATCH_CONFIDENCE"] and 0 <= low["Confidence"] < 75
    )
    found = real_fp.call("SearchUsers", {"CollectionId": "c", "FaceId": a[4]})["UserMatches"]
    assert found and found[0]["User"]["UserId"] == "mindy" and found[0]["Similarity"] >= 80
    by_image = real_fp.call(
        "SearchUsersByImage", {"CollectionId": "c", "Image": {"Bytes": mindy[4].read_bytes()}}
    )
    assert by_image["UserMatches"][0]["User"]["UserId"] == "mindy"
    stranger = real_fp.call(
        "SearchUsersByImage", {"CollectionId": "c", "Image": {"Bytes": elton[1].read_bytes()}}
    )
    assert stranger["UserMatches"] == []
    matches = real_fp.call(
        "SearchFacesByImage", {"CollectionId": "c", "Image": {"Bytes": elton[1].read_bytes()}}
    )
    assert [m["Face"]["FaceId"] for m in matches["FaceMatches"]][:1] == [
        b[1]
    ]  # the same photo, indexed above


def test_group_photo_and_faceless_image(real_fp: FacePipe, sample_images: Path) -> None:
    group = (sample_images / "t1.jpg").read_bytes()
    out = real_fp.call(
        "IndexFaces",
        {"CollectionId": "c", "Image": {"Bytes": group}, "ExternalImageId": "group", "MaxFaces": 2},
    )
    areas = [
        r["Face"]["BoundingBox"]["Width"] * r["Face"]["BoundingBox"]["Height"] for r in out["FaceRecords"]
    ]
    assert len(areas) == 2 and areas == sorted(areas, reverse=True)
    assert len(out["FaceRecords"]) + len(out["UnindexedFaces"]) == 6
    assert any(u["Reasons"] == ["EXCEEDS_MAX_FACES"] for u in out["UnindexedFaces"])
    again = real_fp.call(
        "IndexFaces",
        {"CollectionId": "c", "Image": {"Bytes": group}, "ExternalImageId": "group", "MaxFaces": 2},
    )
    assert [r["Face"]["FaceId"] for r in again["FaceRecords"]] == [
        r["Face"]["FaceId"] for r in out["FaceRecords"]
    ]
    ok, blank = cv2.imencode(".png", np.full((200, 200, 3), 127, dtype=np.uint8))
    assert ok
    image = {"Bytes": blank.tobytes()}
    with pytest.raises(errors.InvalidParameterException, match="no faces"):
        real_fp.call("SearchFacesByImage", {"CollectionId": "c", "Image": image})
    assert real_fp.call("SearchUsersByImage", {"CollectionId": "c", "Image": image})["UserMatches"] == []
    with pytest.raises(errors.InvalidImageFormatException):
        real_fp.call("IndexFaces", {"CollectionId": "c", "Image": {"Bytes": b"not an image"}})


def test_index_faces_detection_attributes_all_match_detect_faces(
    real_fp: FacePipe, sample_images: Path
) -> None:
    group = (sample_images / "t1.jpg").read_bytes()
    detected = real_fp.call("DetectFaces", {"Image": {"Bytes": group}, "Attributes": ["ALL"]})
    assert detected == real_fp.call("DetectFaces", {"Image": {"Bytes": group}})
    by_box = {json.dumps(d["BoundingBox"], sort_keys=True): d for d in detected["FaceDetails"]}
    out = real_fp.call(
        "IndexFaces",
        {
            "CollectionId": "c",
            "Image": {"Bytes": group},
            "ExternalImageId": "group-all",
            "MaxFaces": 4,
            "DetectionAttributes": ["ALL"],
        },
    )
    report = ParamValidator().validate(out, MODEL.operation_model("IndexFaces").output_shape)
    assert not report.has_errors(), report.generate_report()
    details = [r["FaceDetail"] for r in out["FaceRecords"]] + [u["FaceDetail"] for u in out["UnindexedFaces"]]
    assert len(out["FaceRecords"]) == 4 and len(details) == 6
    for detail in details:
        # what the models compute, nothing invented (no AgeRange, Gender, Emotions, ...)
        assert set(detail) == {"BoundingBox", "Landmarks", "Pose", "Quality", "Confidence"}
        assert detail == by_box[json.dumps(detail["BoundingBox"], sort_keys=True)]
    with pytest.raises(errors.InvalidParameterException, match=r"(?i)detectionAttributes"):
        real_fp.call(
            "IndexFaces",
            {"CollectionId": "c", "Image": {"Bytes": group}, "DetectionAttributes": ["AGE"]},
        )
    item = AnalyzedImage("group-bad", 1, 1, [], detection_attributes=("AGE",))
    with pytest.raises(errors.InvalidParameterException, match="DetectionAttributes values"):
        index_analyzed_images(real_fp, "c", [item])
