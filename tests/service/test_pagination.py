"""NextTokens of ListFaces, ListUsers and ListCollections: bound to the operation, the collection
and the request's filters; opaque, bounded, and refused with InvalidPaginationTokenException
when presented to any other request."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from pipeline.errors import InvalidPaginationTokenException
from pipeline.service import FacePipe
from pipeline.service.pagination import Paginator
from tests.support.synthetic_faces import index_vectors, person

TOKEN_MAX_CHARS = 255
"""botocore's PaginationToken: at most 255 characters."""


def faces_of_two_users(fp: FacePipe) -> tuple[list[str], list[str]]:
    """Collection c with users a and b, three faces each; returns (a's FaceIds, b's FaceIds)."""
    fp.call("CreateCollection", {"CollectionId": "c"})
    rng = np.random.default_rng(7)
    ids_a = index_vectors(fp, "c", person(rng, 3), prefix="a")
    ids_b = index_vectors(fp, "c", person(rng, 3), prefix="b")
    for user, ids in (("a", ids_a), ("b", ids_b)):
        fp.call("CreateUser", {"CollectionId": "c", "UserId": user})
        fp.call(
            "AssociateFaces", {"CollectionId": "c", "UserId": user, "FaceIds": ids, "UserMatchThreshold": 0}
        )
    return ids_a, ids_b


def refused(fp: FacePipe, operation: str, params: dict[str, object]) -> str:
    """The message of the InvalidPaginationTokenException ``operation`` raises."""
    with pytest.raises(InvalidPaginationTokenException) as caught:
        fp.call(operation, params)
    return caught.value.message


def test_list_faces_token_for_one_user_is_refused_for_another(fake_pipe: FacePipe) -> None:
    faces_of_two_users(fake_pipe)
    first = fake_pipe.call("ListFaces", {"CollectionId": "c", "UserId": "a", "MaxResults": 1})
    token = first["NextToken"]
    message = refused(fake_pipe, "ListFaces", {"CollectionId": "c", "UserId": "b", "NextToken": token})
    assert "FaceIds and UserId" in message and "same" in message
    message = refused(fake_pipe, "ListFaces", {"CollectionId": "c", "NextToken": token})  # filter dropped
    assert "UserId" in message


def test_list_faces_token_with_the_same_filters_gives_the_next_page(fake_pipe: FacePipe) -> None:
    ids_a, _ = faces_of_two_users(fake_pipe)
    params = {"CollectionId": "c", "UserId": "a", "MaxResults": 2}
    first = fake_pipe.call("ListFaces", params)
    second = fake_pipe.call("ListFaces", {**params, "NextToken": first["NextToken"]})
    assert [f["FaceId"] for f in first["Faces"] + second["Faces"]] == ids_a
    assert "NextToken" not in second
    # MaxResults may change from page to page
    rest = fake_pipe.call("ListFaces", {**params, "MaxResults": 5, "NextToken": first["NextToken"]})
    assert [f["FaceId"] for f in rest["Faces"]] == ids_a[2:]


def test_list_faces_token_is_bound_to_the_face_ids(fake_pipe: FacePipe) -> None:
    ids_a, ids_b = faces_of_two_users(fake_pipe)
    wanted = [ids_a[0], ids_b[0], ids_b[1]]
    first = fake_pipe.call("ListFaces", {"CollectionId": "c", "FaceIds": wanted, "MaxResults": 1})
    token = first["NextToken"]
    other = [ids_a[0], ids_b[0], ids_b[2]]
    message = refused(fake_pipe, "ListFaces", {"CollectionId": "c", "FaceIds": other, "NextToken": token})
    assert "FaceIds" in message
    # the same FaceIds in another order, repeated: the same filter
    same = [wanted[2], wanted[0], wanted[1], wanted[0]]
    rest = fake_pipe.call("ListFaces", {"CollectionId": "c", "FaceIds": same, "NextToken": token})
    assert {f["FaceId"] for f in first["Faces"] + rest["Faces"]} == set(wanted)


def test_tokens_are_bound_to_operation_and_collection(fake_pipe: FacePipe) -> None:
    faces_of_two_users(fake_pipe)
    fake_pipe.call("CreateCollection", {"CollectionId": "d"})
    faces = fake_pipe.call("ListFaces", {"CollectionId": "c", "MaxResults": 1})["NextToken"]
    users = fake_pipe.call("ListUsers", {"CollectionId": "c", "MaxResults": 1})["NextToken"]
    collections = fake_pipe.call("ListCollections", {"MaxResults": 1})["NextToken"]
    refused(fake_pipe, "ListUsers", {"CollectionId": "c", "NextToken": faces})
    refused(fake_pipe, "ListFaces", {"CollectionId": "c", "NextToken": users})
    refused(fake_pipe, "ListFaces", {"CollectionId": "d", "NextToken": faces})
    refused(fake_pipe, "ListUsers", {"CollectionId": "d", "NextToken": users})
    refused(fake_pipe, "ListUsers", {"CollectionId": "c", "NextToken": collections})
    assert fake_pipe.call("ListUsers", {"CollectionId": "c", "NextToken": users})["Users"] == [
        {"UserId": "b", "UserStatus": "ACTIVE"}
    ]
    assert fake_pipe.call("ListCollections", {"NextToken": collections})["CollectionIds"] == ["d"]


def test_an_altered_token_is_refused(fake_pipe: FacePipe) -> None:
    faces_of_two_users(fake_pipe)
    token = fake_pipe.call("ListFaces", {"CollectionId": "c", "MaxResults": 1})["NextToken"]
    body, _, check = token.partition(".")
    for bad in (body + ".00000000", body[:-2] + "." + check, token + "x", "." + check):
        if bad != token:
            refused(fake_pipe, "ListFaces", {"CollectionId": "c", "NextToken": bad})


def test_tokens_stay_short_whatever_the_filters(fake_pipe: FacePipe) -> None:
    fake_pipe.call("CreateCollection", {"CollectionId": "c"})
    index_vectors(fake_pipe, "c", person(np.random.default_rng(3), 3))
    many = [str(uuid.uuid4()) for _ in range(4093)]
    listed = fake_pipe.call("ListFaces", {"CollectionId": "c"})["Faces"]
    wanted = many + [f["FaceId"] for f in listed]
    page = fake_pipe.call("ListFaces", {"CollectionId": "c", "FaceIds": wanted, "MaxResults": 1})
    two = fake_pipe.call("ListFaces", {"CollectionId": "c", "FaceIds": wanted[-2:], "MaxResults": 1})
    assert len(page["NextToken"]) == len(two["NextToken"]) <= TOKEN_MAX_CHARS
    longest_user = "u" * 128  # UserId's maximum length
    for user in (longest_user, longest_user[:-1] + "v"):
        fake_pipe.call("CreateUser", {"CollectionId": "c", "UserId": user})
    token = fake_pipe.call("ListUsers", {"CollectionId": "c", "MaxResults": 1})["NextToken"]
    assert len(token) <= TOKEN_MAX_CHARS
    rest = fake_pipe.call("ListUsers", {"CollectionId": "c", "NextToken": token})  # passes validation
    assert [u["UserId"] for u in rest["Users"]] == [longest_user[:-1] + "v"]


def test_paginator_pages_and_keys() -> None:
    pages: Paginator[int] = Paginator("ListFaces", 3, int, {"UserId": "a", "FaceIds": None})
    assert pages.resume(None) is None and pages.resume("") is None
    page, token = pages.page([10, 11, 12], 2, key=lambda label: label)
    assert page == [10, 11] and token is not None and pages.resume(token) == 11
    assert pages.page([10, 11], 2, key=lambda label: label) == ([10, 11], None)
    # None filters are the same as absent ones
    assert Paginator("ListFaces", 3, int, {"UserId": "a"}).resume(token) == 11
    with pytest.raises(InvalidPaginationTokenException):
        Paginator("ListFaces", 3, int, {"UserId": "b"}).resume(token)
    names: Paginator[str] = Paginator("ListUsers", 3, str)
    with pytest.raises(InvalidPaginationTokenException):  # a label where a name belongs
        names.resume(Paginator("ListUsers", 3, int).token(11))
