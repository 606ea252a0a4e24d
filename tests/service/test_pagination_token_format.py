"""NextTokens of requests without filters are the ones the previous release issued: the same
bytes (a token in a client's hands across an upgrade keeps working) and room for a CollectionId of
up to 159 characters in a ListCollections token that passes PaginationToken's 255-character limit.
A token with filters carries their digest and is refused by a request without them (and back)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.errors import InvalidPaginationTokenException
from pipeline.service import FacePipe
from tests.support.synthetic_faces import LinearEngine, index_vectors, person


def previous_release_token(operation: str, scope: int, key: str | int) -> str:
    """The NextToken the release before the filter-bound tokens wrote for ``key``."""
    raw = json.dumps([operation, scope, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=") + "." + hashlib.sha256(raw).hexdigest()[:8]


@pytest.fixture()
def pipe(tmp_path: Path) -> Iterator[FacePipe]:
    fp = FacePipe(Settings(data_dir=tmp_path / "home", cache_dir=tmp_path / "cache"), engine=LinearEngine())
    yield fp
    fp.close()


def test_tokens_without_filters_are_the_previous_release_s(pipe: FacePipe) -> None:
    pipe.call("CreateCollection", {"CollectionId": "c"})
    pipe.call("CreateCollection", {"CollectionId": "d"})
    ids = index_vectors(pipe, "c", person(np.random.default_rng(5), 3))
    for user in ("u1", "u2"):
        pipe.call("CreateUser", {"CollectionId": "c", "UserId": user})
    with pipe.store.read() as tx:
        scope = tx.collection("c").id
        first_label = tx.faces_by_id(tx.collection("c"), ids[:1])[ids[0]].label
    faces = pipe.call("ListFaces", {"CollectionId": "c", "MaxResults": 1})
    assert faces["NextToken"] == previous_release_token("ListFaces", scope, first_label)
    users = pipe.call("ListUsers", {"CollectionId": "c", "MaxResults": 1})
    assert users["NextToken"] == previous_release_token("ListUsers", scope, "u1")
    collections = pipe.call("ListCollections", {"MaxResults": 1})
    assert collections["NextToken"] == previous_release_token("ListCollections", 0, "c")
    rest = pipe.call("ListFaces", {"CollectionId": "c", "NextToken": faces["NextToken"]})
    assert [f["FaceId"] for f in rest["Faces"]] == ids[1:]


def test_a_filtered_token_and_an_unfiltered_one_do_not_mix(pipe: FacePipe) -> None:
    pipe.call("CreateCollection", {"CollectionId": "c"})
    ids = index_vectors(pipe, "c", person(np.random.default_rng(6), 3))
    plain = pipe.call("ListFaces", {"CollectionId": "c", "MaxResults": 1})["NextToken"]
    filtered = pipe.call("ListFaces", {"CollectionId": "c", "FaceIds": ids, "MaxResults": 1})["NextToken"]
    with pytest.raises(InvalidPaginationTokenException, match="FaceIds"):
        pipe.call("ListFaces", {"CollectionId": "c", "FaceIds": ids, "NextToken": plain})
    with pytest.raises(InvalidPaginationTokenException, match="FaceIds"):
        pipe.call("ListFaces", {"CollectionId": "c", "NextToken": filtered})
    rest = pipe.call("ListFaces", {"CollectionId": "c", "FaceIds": ids[::-1], "NextToken": filtered})
    assert [f["FaceId"] for f in rest["Faces"]] == ids[1:]


def test_a_list_collections_token_after_a_159_character_name_passes_validation(pipe: FacePipe) -> None:
    names = ["a" * 159, "b" * 159]
    for name in names:
        pipe.call("CreateCollection", {"CollectionId": name})
    first = pipe.call("ListCollections", {"MaxResults": 1})
    assert len(first["NextToken"]) <= 255
    rest = pipe.call("ListCollections", {"NextToken": first["NextToken"]})
    assert rest["CollectionIds"] == names[1:]
