"""The typed cores of the face, user and search families, called directly as jobs and bench call
them: their results, and that each operation's response is exactly its core's result shaped by
pipeline.service.responses."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest

from pipeline.errors import IdempotentParameterMismatchException, InvalidParameterException
from pipeline.service import FacePipe, responses
from pipeline.service import faces as face_cores
from pipeline.service import search as search_cores
from pipeline.service import users as user_cores
from pipeline.service.faces import AnalyzedImage
from pipeline.service.results import Face, FaceFailure, IndexedImage
from pipeline.store import FaceRow
from pipeline.types import BoundingBox
from tests.support.synthetic_faces import index_vectors, make_face, person


def test_index_images_returns_typed_results_and_the_operation_shape(fake_pipe: FacePipe) -> None:
    fake_pipe.call("CreateCollection", {"CollectionId": "c"})
    rng = np.random.default_rng(1)
    large = make_face(rng.normal(size=16), left=0.1, size=0.4)
    small = make_face(rng.normal(size=16), left=0.6, size=0.1)
    dim = make_face(rng.normal(size=16), left=0.3, size=0.2, confidence=20)
    item = AnalyzedImage("group", 800, 600, [small, dim, large], max_faces=1)
    (result,) = face_cores.index_images(fake_pipe, "c", [item])
    assert isinstance(result, IndexedImage) and result.model_version == "1.0"
    (record,) = result.faces
    assert record.detected == large
    assert record.face.bounding_box == BoundingBox(0.1, 0.1, 0.4, 0.4) and record.face.user_id is None
    assert [(c.face, c.reasons) for c in result.unindexed] == [
        (dim, ("LOW_CONFIDENCE",)),
        (small, ("EXCEEDS_MAX_FACES",)),
    ]
    assert result.detection_attributes == ("DEFAULT",)
    shaped = responses.indexed_image_to_api(result)
    assert shaped["FaceRecords"][0]["Face"]["BoundingBox"] == {
        "Width": 0.4,
        "Height": 0.4,
        "Left": 0.1,
        "Top": 0.1,
    }
    assert [u["Reasons"] for u in shaped["UnindexedFaces"]] == [["LOW_CONFIDENCE"], ["EXCEEDS_MAX_FACES"]]
    # indexed again: the stored face comes back, nothing is stored twice
    assert face_cores.index_images(fake_pipe, "c", [item])[0].faces[0].face == record.face
    assert fake_pipe.call("DescribeCollection", {"CollectionId": "c"})["FaceCount"] == 1


def test_detection_attributes_are_checked_once_per_image(
    fake_pipe: FacePipe, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_pipe.call("CreateCollection", {"CollectionId": "c"})
    checked: list[object] = []
    real_check = face_cores.check_attributes

    def counting(values: object, field: str = "Attributes") -> tuple[str, ...]:
        checked.append(values)
        return real_check(values, field)  # type: ignore[arg-type]

    monkeypatch.setattr(face_cores, "check_attributes", counting)
    faces = [make_face(v, left=0.1 * i, size=0.05) for i, v in enumerate(person(np.random.default_rng(2), 4))]
    face_cores.index_images(
        fake_pipe, "c", [AnalyzedImage("x", 640, 480, faces, detection_attributes=["ALL"])]
    )
    assert checked == [["ALL"]]
    with pytest.raises(InvalidParameterException, match="DetectionAttributes"):
        face_cores.index_images(
            fake_pipe, "c", [AnalyzedImage("y", 640, 480, faces, detection_attributes=["AGE"])]
        )


def test_list_and_delete_cores(fake_pipe: FacePipe) -> None:
    fake_pipe.call("CreateCollection", {"CollectionId": "c"})
    ids = index_vectors(fake_pipe, "c", person(np.random.default_rng(3), 3))
    page = face_cores.list_faces(fake_pipe, "c", limit=2)
    assert [f.face_id for f in page.faces] == ids[:2] and all(isinstance(f, Face) for f in page.faces)
    rest = face_cores.list_faces(fake_pipe, "c", limit=2, next_token=page.next_token)
    assert [f.face_id for f in rest.faces] == ids[2:] and rest.next_token is None
    assert responses.face_page_to_api(page) == fake_pipe.call(
        "ListFaces", {"CollectionId": "c", "MaxResults": 2}
    )
    ghost = "00000000-0000-4000-8000-000000000000"
    deletion = face_cores.delete_faces(fake_pipe, "c", [ids[0], ghost, ids[0]])
    assert deletion.deleted == [ids[0]]
    assert deletion.unsuccessful == [FaceFailure(ghost, ("FACE_NOT_FOUND",))]


def test_associate_core_and_operation_agree_and_share_idempotency_tokens(fake_pipe: FacePipe) -> None:
    fake_pipe.call("CreateCollection", {"CollectionId": "c"})
    rng = np.random.default_rng(4)
    tom = index_vectors(fake_pipe, "c", person(rng, 3), prefix="tom")
    stranger = index_vectors(fake_pipe, "c", person(rng, 1), prefix="x")
    user_cores.create_user(fake_pipe, "c", "tom")
    first = user_cores.associate(fake_pipe, "c", "tom", tom[:1])
    assert first.associated == tom[:1] and first.user_status == "ACTIVE" and first.unsuccessful == []
    params = {
        "CollectionId": "c",
        "UserId": "tom",
        "FaceIds": tom[1:] + stranger,
        "UserMatchThreshold": 90.0,
        "ClientRequestToken": "job-1",
    }
    shaped = fake_pipe.call("AssociateFaces", params)
    # the same request through the core with the same token: the stored result, nothing done again
    again = user_cores.associate(
        fake_pipe, "c", "tom", tom[1:] + stranger, 90.0, client_request_token="job-1"
    )
    assert responses.association_to_api(again) == shaped
    assert [f.reasons for f in again.unsuccessful if f.face_id in stranger] == [("LOW_MATCH_CONFIDENCE",)]
    assert all(f.confidence is not None and f.confidence < 90 for f in again.unsuccessful)
    with pytest.raises(IdempotentParameterMismatchException):
        user_cores.associate(fake_pipe, "c", "tom", tom[1:], 90.0, client_request_token="job-1")
    removed = user_cores.disassociate(fake_pipe, "c", "tom", [tom[0], stranger[0]])
    assert removed.associated == [tom[0]] and removed.unsuccessful == []
    users = user_cores.list_users(fake_pipe, "c")
    assert [(u.user_id, u.status) for u in users.users] == [
        ("tom", "ACTIVE" if again.associated else "CREATED")
    ]


def test_search_cores_return_typed_matches(fake_pipe: FacePipe) -> None:
    fake_pipe.call("CreateCollection", {"CollectionId": "c"})
    rng = np.random.default_rng(5)
    ids = index_vectors(fake_pipe, "c", person(rng, 3, spread=0.1))
    search = search_cores.search_faces(fake_pipe, "c", ids[0], threshold=50.0)
    assert {m.face.face_id for m in search.matches} == set(ids[1:]) and search.searched_face_id == ids[0]
    assert search.matches == sorted(search.matches, key=lambda m: -m.similarity)
    shaped = fake_pipe.call(
        "SearchFaces", {"CollectionId": "c", "FaceId": ids[0], "FaceMatchThreshold": 50.0}
    )
    assert responses.face_search_to_api(search) == shaped
    user_cores.create_user(fake_pipe, "c", "u")
    user_cores.associate(fake_pipe, "c", "u", ids[1:])
    users = search_cores.search_users(fake_pipe, "c", face_id=ids[0], threshold=50.0)
    assert [(m.user.user_id, m.user.status) for m in users.matches] == [("u", "ACTIVE")]
    assert search_cores.search_users(fake_pipe, "c", user_id="u").matches == []  # the user itself is left out
    with pytest.raises(InvalidParameterException):
        search_cores.search_users(fake_pipe, "c")


def test_the_two_user_match_defaults_keep_their_meanings() -> None:
    assert user_cores.ASSOCIATE_FACES_MATCH_THRESHOLD == 75.0  # AssociateFaces' documented default
    assert search_cores.SEARCH_USERS_MATCH_THRESHOLD == 80.0  # SearchUsers' documented default


def test_face_of_a_row_equals_the_plain_build() -> None:
    row = FaceRow(7, "f", "i", None, 0.1, 0.2, 0.3, 0.4, 99.5, "u")
    built = Face.of(row)
    assert built == Face("f", "i", None, BoundingBox(0.1, 0.2, 0.3, 0.4), 99.5, "u")
    assert set(vars(built)) == {f.name for f in fields(Face)}
    assert set(vars(built.bounding_box)) == {f.name for f in fields(BoundingBox)}
    assert hash(built.bounding_box) == hash(BoundingBox(0.1, 0.2, 0.3, 0.4))
