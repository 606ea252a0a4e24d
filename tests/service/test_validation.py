"""Request validation beyond botocore's: non-finite numbers, lone surrogates, Unicode-class patterns."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest

from pipeline.errors import InvalidPaginationTokenException, InvalidParameterException
from pipeline.service import FacePipe
from pipeline.service.common import encode_token
from pipeline.service.images import image_bytes

FACE_ID = "11111111-1111-1111-1111-111111111111"


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_threshold_is_invalid_parameter(fp: FacePipe, threshold: float) -> None:
    fp.call("CreateCollection", {"CollectionId": "c"})
    with pytest.raises(InvalidParameterException, match=r"(?i)facematchthreshold"):
        fp.call("SearchFaces", {"CollectionId": "c", "FaceId": FACE_ID, "FaceMatchThreshold": threshold})


def test_tag_key_with_lone_surrogate_is_invalid_parameter(fp: FacePipe) -> None:
    with pytest.raises(InvalidParameterException, match="Unicode") as caught:
        fp.call("CreateCollection", {"CollectionId": "c", "Tags": {"k\ud800": "v"}})
    caught.value.message.encode("utf-8")  # the message itself is printable UTF-8


def test_tag_patterns_use_unicode_classes(fp: FacePipe) -> None:
    with pytest.raises(InvalidParameterException, match="regular expression pattern"):
        fp.call("CreateCollection", {"CollectionId": "c", "Tags": {"aws:reserved": "v"}})
    created = fp.call("CreateCollection", {"CollectionId": "c", "Tags": {"équipe 1": "Zoë"}})
    assert created["StatusCode"] == 200


@pytest.mark.parametrize("threshold", [Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity")])
def test_non_finite_decimal_threshold_is_invalid_parameter(fp: FacePipe, threshold: Decimal) -> None:
    fp.call("CreateCollection", {"CollectionId": "c"})
    with pytest.raises(InvalidParameterException, match=r"(?i)usermatchthreshold.*finite"):
        fp.call(
            "AssociateFaces",
            {"CollectionId": "c", "UserId": "u", "FaceIds": [FACE_ID], "UserMatchThreshold": threshold},
        )


def test_decimal_threshold_out_of_range_is_invalid_parameter(fp: FacePipe) -> None:
    with pytest.raises(InvalidParameterException, match=r"(?i)facematchthreshold"):
        fp.call(
            "SearchFaces", {"CollectionId": "c", "FaceId": FACE_ID, "FaceMatchThreshold": Decimal("1000")}
        )


def test_image_bytes_take_what_botocore_takes(fp: FacePipe) -> None:
    assert image_bytes(fp.settings, {"Bytes": "abc"}) == b"abc"
    assert image_bytes(fp.settings, {"Bytes": io.BytesIO(b"\xff\xd8")}) == b"\xff\xd8"
    assert image_bytes(fp.settings, {"Bytes": bytearray(b"xy")}) == b"xy"
    with pytest.raises(InvalidParameterException, match=r"Image\.Bytes"):
        image_bytes(fp.settings, {"Bytes": 12})
    with pytest.raises(InvalidParameterException, match=r"Image\.Bytes"):
        image_bytes(fp.settings, {"Bytes": "\ud800"})


@pytest.mark.parametrize("key", ["abc", 10**30, -1, True])
def test_forged_list_faces_token_is_invalid_pagination_token(fp: FacePipe, key: object) -> None:
    fp.call("CreateCollection", {"CollectionId": "c"})
    with fp.store.read() as tx:
        scope = tx.collection("c").id
    token = encode_token("ListFaces", scope, key)  # type: ignore[arg-type]
    with pytest.raises(InvalidPaginationTokenException):
        fp.call("ListFaces", {"CollectionId": "c", "NextToken": token})
