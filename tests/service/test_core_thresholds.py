"""The typed cores refuse a threshold that is not a number from 0 to 100, as the operations do
through the model: a library caller's NaN must not associate or match everything."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import InvalidParameterException
from pipeline.service import FacePipe
from pipeline.service.search import search_faces, search_users
from pipeline.service.users import associate
from tests.support.synthetic_faces import index_vectors, person


@pytest.mark.parametrize("bad", [float("nan"), -1.0, 100.5, float("inf"), True])
def test_cores_refuse_thresholds_outside_0_to_100(fake_pipe: FacePipe, bad: float) -> None:
    fake_pipe.call("CreateCollection", {"CollectionId": "c"})
    face_ids = index_vectors(fake_pipe, "c", person(np.random.default_rng(3), 3))
    fake_pipe.call("CreateUser", {"CollectionId": "c", "UserId": "u"})
    fake_pipe.call("AssociateFaces", {"CollectionId": "c", "UserId": "u", "FaceIds": face_ids[:1]})
    with pytest.raises(InvalidParameterException, match="UserMatchThreshold must be"):
        associate(fake_pipe, "c", "u", face_ids[1:], bad)
    with pytest.raises(InvalidParameterException, match="FaceMatchThreshold must be"):
        search_faces(fake_pipe, "c", face_ids[0], bad)
    with pytest.raises(InvalidParameterException, match="UserMatchThreshold must be"):
        search_users(fake_pipe, "c", face_id=face_ids[0], threshold=bad)
    listed = fake_pipe.call("ListFaces", {"CollectionId": "c", "UserId": "u"})
    assert [f["FaceId"] for f in listed["Faces"]] == face_ids[:1], "nothing was associated"


def test_cores_take_the_bounds_themselves(fake_pipe: FacePipe) -> None:
    fake_pipe.call("CreateCollection", {"CollectionId": "c"})
    face_ids = index_vectors(fake_pipe, "c", person(np.random.default_rng(4), 3))
    assert len(search_faces(fake_pipe, "c", face_ids[0], 0).matches) == 2
    assert search_faces(fake_pipe, "c", face_ids[0], 100).matches == []
