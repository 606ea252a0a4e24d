"""Collection, face and user operations through FacePipe.call, on synthetic vectors."""

from __future__ import annotations

import uuid
from datetime import datetime

import numpy as np
import pytest

from pipeline import errors
from pipeline.service import FacePipe
from pipeline.service.faces import AnalyzedImage, index_analyzed_images
from tests.support.synthetic_faces import index_vectors, make_face, person, unit


def code_of(fake_pipe: FacePipe, operation: str, params: dict) -> str:
    with pytest.raises(errors.RekognitionError) as info:
        fake_pipe.call(operation, params)
    return info.value.code


def test_collection_lifecycle(fake_pipe: FacePipe) -> None:
    out = fake_pipe.call("CreateCollection", {"CollectionId": "c1"})
    assert out["StatusCode"] == 200 and out["CollectionArn"].endswith("collection/c1")
    assert code_of(fake_pipe, "CreateCollection", {"CollectionId": "c1"}) == "ResourceAlreadyExistsException"
    for name in ("c3", "c2"):
        fake_pipe.call("CreateCollection", {"CollectionId": name})
    first = fake_pipe.call("ListCollections", {"MaxResults": 2})
    assert first["CollectionIds"] == ["c1", "c2"] and first["FaceModelVersions"] == ["1.0", "1.0"]
    second = fake_pipe.call("ListCollections", {"MaxResults": 2, "NextToken": first["NextToken"]})
    assert second["CollectionIds"] == ["c3"] and "NextToken" not in second
    described = fake_pipe.call("DescribeCollection", {"CollectionId": "c1"})
    assert described["FaceCount"] == 0 and described["UserCount"] == 0
    assert isinstance(described["CreationTimestamp"], datetime) and described["CreationTimestamp"].tzinfo
    assert fake_pipe.call("DeleteCollection", {"CollectionId": "c1"}) == {"StatusCode": 200}
    assert code_of(fake_pipe, "DescribeCollection", {"CollectionId": "c1"}) == "ResourceNotFoundException"
    assert (
        code_of(fake_pipe, "ListCollections", {"NextToken": "garbage"}) == "InvalidPaginationTokenException"
    )


def test_index_sorts_filters_and_does_not_duplicate(fake_pipe: FacePipe) -> None:
    fake_pipe.call("CreateCollection", {"CollectionId": "c"})
    rng = np.random.default_rng(1)
    small, large, blurry = (
        make_face(rng.normal(size=16), left=x, size=s) for x, s in ((0.6, 0.1), (0.1, 0.4), (0.3, 0.2))
    )
    blurry = make_face(blurry.embedding, left=0.3, size=0.2, confidence=20)
    item = AnalyzedImage("group", 800, 600, [small, large, blurry], max_faces=1)
    (first,) = index_analyzed_images(fake_pipe, "c", [item])
    assert [r["Face"]["BoundingBox"]["Width"] for r in first["FaceRecords"]] == [0.4]
    reasons = sorted(tuple(u["Reasons"]) for u in first["UnindexedFaces"])
    assert reasons == [("EXCEEDS_MAX_FACES",), ("LOW_CONFIDENCE",)]
    (again,) = index_analyzed_images(fake_pipe, "c", [item])
    assert again["FaceRecords"][0]["Face"]["FaceId"] == first["FaceRecords"][0]["Face"]["FaceId"]
    other = AnalyzedImage("group-copy", 800, 600, [large])
    (third,) = index_analyzed_images(fake_pipe, "c", [other])
    assert third["FaceRecords"][0]["Face"]["FaceId"] != first["FaceRecords"][0]["Face"]["FaceId"]
    assert fake_pipe.call("DescribeCollection", {"CollectionId": "c"})["FaceCount"] == 2


def test_list_and_delete_faces(fake_pipe: FacePipe) -> None:
    fake_pipe.call("CreateCollection", {"CollectionId": "c"})
    ids = index_vectors(fake_pipe, "c", person(np.random.default_rng(2), 5))
    page1 = fake_pipe.call("ListFaces", {"CollectionId": "c", "MaxResults": 3})
    page2 = fake_pipe.call(
        "ListFaces", {"CollectionId": "c", "MaxResults": 3, "NextToken": page1["NextToken"]}
    )
    assert [f["FaceId"] for f in page1["Faces"] + page2["Faces"]] == ids and "NextToken" not in page2
    other = fake_pipe.call("CreateCollection", {"CollectionId": "d"}) and "d"
    token = fake_pipe.call("ListFaces", {"CollectionId": "c", "MaxResults": 1})["NextToken"]
    assert (
        code_of(fake_pipe, "ListFaces", {"CollectionId": other, "NextToken": token})
        == "InvalidPaginationTokenException"
    )
    fake_pipe.call("CreateUser", {"CollectionId": "c", "UserId": "u"})
    fake_pipe.call("AssociateFaces", {"CollectionId": "c", "UserId": "u", "FaceIds": [ids[0]]})
    ghost = str(uuid.uuid4())
    out = fake_pipe.call("DeleteFaces", {"CollectionId": "c", "FaceIds": [ids[0], ids[1], ghost]})
    assert out["DeletedFaces"] == [ids[1]]
    assert out["UnsuccessfulFaceDeletions"] == [
        {"FaceId": ids[0], "UserId": "u", "Reasons": ["ASSOCIATED_TO_AN_EXISTING_USER"]},
        {"FaceId": ghost, "Reasons": ["FACE_NOT_FOUND"]},
    ]
    left = [f["FaceId"] for f in fake_pipe.call("ListFaces", {"CollectionId": "c"})["Faces"]]
    assert left == [ids[0], *ids[2:]]
    by_user = fake_pipe.call("ListFaces", {"CollectionId": "c", "UserId": "u"})["Faces"]
    assert [(f["FaceId"], f["UserId"]) for f in by_user] == [(ids[0], "u")]


def test_associate_faces_semantics(fake_pipe: FacePipe) -> None:
    fake_pipe.call("CreateCollection", {"CollectionId": "c"})
    rng = np.random.default_rng(3)
    alice = index_vectors(fake_pipe, "c", person(rng, 6, spread=0.2), "a")
    bob = index_vectors(fake_pipe, "c", person(rng, 3, spread=0.2), "b")
    fake_pipe.call("CreateUser", {"CollectionId": "c", "UserId": "alice"})
    assert fake_pipe.call("ListUsers", {"CollectionId": "c"})["Users"] == [
        {"UserId": "alice", "UserStatus": "CREATED"}
    ]
    assert code_of(fake_pipe, "CreateUser", {"CollectionId": "c", "UserId": "alice"}) == "ConflictException"
    out = fake_pipe.call("AssociateFaces", {"CollectionId": "c", "UserId": "alice", "FaceIds": [alice[0]]})
    assert out == {
        "AssociatedFaces": [{"FaceId": alice[0]}],
        "UnsuccessfulFaceAssociations": [],
        "UserStatus": "ACTIVE",
    }
    out = fake_pipe.call(
        "AssociateFaces", {"CollectionId": "c", "UserId": "alice", "FaceIds": [*alice[1:4], bob[0], alice[0]]}
    )
    assert [f["FaceId"] for f in out["AssociatedFaces"]] == alice[1:4]
    (low,) = out["UnsuccessfulFaceAssociations"]
    assert (
        low["FaceId"] == bob[0] and low["Reasons"] == ["LOW_MATCH_CONFIDENCE"] and 0 <= low["Confidence"] < 75
    )
    fake_pipe.call("CreateUser", {"CollectionId": "c", "UserId": "bob"})
    fake_pipe.call("AssociateFaces", {"CollectionId": "c", "UserId": "bob", "FaceIds": bob})
    ghost = str(uuid.uuid4())
    out = fake_pipe.call(
        "AssociateFaces",
        {"CollectionId": "c", "UserId": "alice", "FaceIds": [bob[1], ghost], "UserMatchThreshold": 0},
    )
    assert out["AssociatedFaces"] == []
    assert [u["Reasons"] for u in out["UnsuccessfulFaceAssociations"]] == [
        ["ASSOCIATED_TO_A_DIFFERENT_USER"],
        ["FACE_NOT_FOUND"],
    ]
    assert code_of(
        fake_pipe, "AssociateFaces", {"CollectionId": "c", "UserId": "nobody", "FaceIds": [ghost]}
    ) == ("ResourceNotFoundException")
    assert code_of(
        fake_pipe, "AssociateFaces", {"CollectionId": "x", "UserId": "alice", "FaceIds": [ghost]}
    ) == ("ResourceNotFoundException")
    out = fake_pipe.call(
        "DisassociateFaces", {"CollectionId": "c", "UserId": "alice", "FaceIds": [alice[1], bob[0], ghost]}
    )
    assert out["DisassociatedFaces"] == [{"FaceId": alice[1]}]
    assert [u["Reasons"] for u in out["UnsuccessfulFaceDisassociations"]] == [
        ["ASSOCIATED_TO_A_DIFFERENT_USER"],
        ["FACE_NOT_FOUND"],
    ]
    fake_pipe.call("DeleteUser", {"CollectionId": "c", "UserId": "bob"})
    faces = {f["FaceId"]: f for f in fake_pipe.call("ListFaces", {"CollectionId": "c"})["Faces"]}
    assert all("UserId" not in faces[f] for f in bob)
    assert fake_pipe.call("DescribeCollection", {"CollectionId": "c"})["UserCount"] == 1


def test_idempotency_tokens(fake_pipe: FacePipe) -> None:
    fake_pipe.call("CreateCollection", {"CollectionId": "c"})
    ids = index_vectors(fake_pipe, "c", person(np.random.default_rng(4), 3))
    fake_pipe.call("CreateUser", {"CollectionId": "c", "UserId": "u", "ClientRequestToken": "t1"})
    assert (
        fake_pipe.call("CreateUser", {"CollectionId": "c", "UserId": "u", "ClientRequestToken": "t1"}) == {}
    )
    request = {"CollectionId": "c", "UserId": "u", "FaceIds": [ids[0]], "ClientRequestToken": "t2"}
    first = fake_pipe.call("AssociateFaces", request)
    fake_pipe.call("DisassociateFaces", {"CollectionId": "c", "UserId": "u", "FaceIds": [ids[0]]})
    assert fake_pipe.call("AssociateFaces", request) == first  # replayed, not done again
    assert fake_pipe.call("ListFaces", {"CollectionId": "c", "UserId": "u"})["Faces"] == []
    changed = {**request, "FaceIds": [ids[1]]}
    assert code_of(fake_pipe, "AssociateFaces", changed) == "IdempotentParameterMismatchException"
    fake_pipe.call("DeleteUser", {"CollectionId": "c", "UserId": "u", "ClientRequestToken": "t3"})
    assert (
        fake_pipe.call("DeleteUser", {"CollectionId": "c", "UserId": "u", "ClientRequestToken": "t3"}) == {}
    )
    assert (
        code_of(fake_pipe, "DeleteUser", {"CollectionId": "c", "UserId": "u"}) == "ResourceNotFoundException"
    )


def test_hundred_face_limit(fake_pipe: FacePipe) -> None:
    fake_pipe.call("CreateCollection", {"CollectionId": "c"})
    rng = np.random.default_rng(5)
    ids = index_vectors(fake_pipe, "c", person(rng, 102, spread=0.1))
    fake_pipe.call("CreateUser", {"CollectionId": "c", "UserId": "u"})
    fake_pipe.call("AssociateFaces", {"CollectionId": "c", "UserId": "u", "FaceIds": ids[:1]})
    out = fake_pipe.call("AssociateFaces", {"CollectionId": "c", "UserId": "u", "FaceIds": ids[1:101]})
    assert len(out["AssociatedFaces"]) == 99
    (over,) = out["UnsuccessfulFaceAssociations"]
    assert over["Reasons"] == ["LOW_MATCH_CONFIDENCE"] and "Confidence" in over
    assert len(fake_pipe.call("ListFaces", {"CollectionId": "c", "UserId": "u"})["Faces"]) == 100
    assert code_of(
        fake_pipe, "AssociateFaces", {"CollectionId": "c", "UserId": "u", "FaceIds": [ids[101]]}
    ) == ("ServiceQuotaExceededException")


def test_search_faces_and_users(fake_pipe: FacePipe) -> None:
    fake_pipe.call("CreateCollection", {"CollectionId": "c"})
    rng = np.random.default_rng(6)
    alice = index_vectors(fake_pipe, "c", person(rng, 4, spread=0.2), "a")
    bob = index_vectors(fake_pipe, "c", person(rng, 4, spread=0.2), "b")
    out = fake_pipe.call("SearchFaces", {"CollectionId": "c", "FaceId": alice[0], "FaceMatchThreshold": 80})
    matched = [m["Face"]["FaceId"] for m in out["FaceMatches"]]
    assert sorted(matched) == sorted(alice[1:]) and out["SearchedFaceId"] == alice[0]
    sims = [m["Similarity"] for m in out["FaceMatches"]]
    assert sims == sorted(sims, reverse=True) and min(sims) >= 80
    assert (
        len(
            fake_pipe.call("SearchFaces", {"CollectionId": "c", "FaceId": alice[0], "MaxFaces": 1})[
                "FaceMatches"
            ]
        )
        == 1
    )
    for name, faces in (("alice", alice[:3]), ("bob", bob[:3]), ("empty", [])):
        fake_pipe.call("CreateUser", {"CollectionId": "c", "UserId": name})
        if faces:
            fake_pipe.call("AssociateFaces", {"CollectionId": "c", "UserId": name, "FaceIds": faces})
    by_face = fake_pipe.call("SearchUsers", {"CollectionId": "c", "FaceId": alice[3]})
    assert [m["User"]["UserId"] for m in by_face["UserMatches"]] == ["alice"]
    assert by_face["SearchedFace"] == {"FaceId": alice[3]}
    by_user = fake_pipe.call("SearchUsers", {"CollectionId": "c", "UserId": "alice", "UserMatchThreshold": 0})
    assert [m["User"]["UserId"] for m in by_user["UserMatches"]] == ["bob"]
    assert code_of(fake_pipe, "SearchUsers", {"CollectionId": "c"}) == "InvalidParameterException"
    fake_pipe.call("DeleteFaces", {"CollectionId": "c", "FaceIds": [alice[3]]})
    assert (
        code_of(fake_pipe, "SearchFaces", {"CollectionId": "c", "FaceId": alice[3]})
        == "ResourceNotFoundException"
    )
    after = fake_pipe.call("SearchFaces", {"CollectionId": "c", "FaceId": alice[0], "FaceMatchThreshold": 0})
    assert alice[3] not in [m["Face"]["FaceId"] for m in after["FaceMatches"]]


def test_errors_and_validation(fake_pipe: FacePipe) -> None:
    with pytest.raises(errors.UnknownOperationException):
        fake_pipe.call("MakeCoffee", {})
    with pytest.raises(errors.InvalidParameterException) as info:
        fake_pipe.call(
            "AssociateFaces", {"CollectionId": "c", "UserId": "bad id!", "FaceIds": [str(uuid.uuid4())]}
        )
    assert info.value.message == (
        "1 validation error detected: Value 'bad id!' at 'userId' failed to satisfy constraint:"
        " Member must satisfy regular expression pattern: [a-zA-Z0-9_.\\-:]+"
    )
    cases = [
        ("AssociateFaces", {"CollectionId": "c", "UserId": "u", "FaceIds": ["x"] * 101}, "faceIds"),
        (
            "AssociateFaces",
            {"CollectionId": "c", "UserId": "u", "FaceIds": ["f"], "UserMatchThreshold": 101},
            "100",
        ),
        ("CreateCollection", {"CollectionId": "a" * 256}, "less than or equal to 255"),
        ("IndexFaces", {"CollectionId": "c", "Image": {"Bytes": b"x"}, "QualityFilter": "SOMETIMES"}, "enum"),
        ("ListUsers", {"CollectionId": "c", "MaxResults": 501}, "maxResults"),
        ("CreateCollection", {}, "Value null at 'collectionId'"),
        ("CreateCollection", {"CollectionId": 5}, "Value '5' at 'collectionId'"),
        ("ListCollections", {"Bogus": 1}, "Bogus"),
    ]
    for operation, params, needle in cases:
        with pytest.raises(errors.InvalidParameterException) as info:
            fake_pipe.call(operation, params)
        assert needle in info.value.message, (operation, info.value.message)


def test_images_parameter(fake_pipe: FacePipe, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from pipeline.service.images import image_bytes

    settings = replace(fake_pipe.settings, max_image_bytes=4, s3_root=tmp_path / "s3")
    assert image_bytes(settings, {"Bytes": b"1234"}) == b"1234"
    with pytest.raises(errors.ImageTooLargeException):
        image_bytes(settings, {"Bytes": b"12345"})
    (tmp_path / "s3" / "bkt").mkdir(parents=True)
    (tmp_path / "s3" / "bkt" / "a.jpg").write_bytes(b"jpeg")
    assert image_bytes(settings, {"S3Object": {"Bucket": "bkt", "Name": "a.jpg"}}) == b"jpeg"
    for obj in (
        {"Bucket": "bkt", "Name": "b.jpg"},
        {"Bucket": "nob", "Name": "a.jpg"},
        {"Bucket": "bkt", "Name": "../bkt/../../x"},
    ):
        with pytest.raises(errors.InvalidS3ObjectException):
            image_bytes(settings, {"S3Object": obj})
    with pytest.raises(errors.InvalidS3ObjectException, match="FACEPIPE_S3_ROOT"):
        image_bytes(replace(settings, s3_root=None), {"S3Object": {"Bucket": "bkt", "Name": "a.jpg"}})
    with pytest.raises(errors.InvalidParameterException):
        image_bytes(settings, {})
    assert unit(np.ones(2))[0] > 0
