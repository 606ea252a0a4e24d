"""Request validation beyond botocore's: non-finite numbers, lone surrogates, Unicode-class patterns."""

from __future__ import annotations

import io
import time
from decimal import Decimal

import pytest

from pipeline.errors import InvalidPaginationTokenException, InvalidParameterException
from pipeline.service import FacePipe
from pipeline.service.images import image_bytes
from pipeline.service.pagination import encode_token
from pipeline.service.validation import MAX_REPORTED, show_value
from tests.service.test_messages import assert_no_python_repr

FACE_ID = "11111111-1111-1111-1111-111111111111"


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_threshold_is_invalid_parameter(fake_pipe: FacePipe, threshold: float) -> None:
    fake_pipe.call("CreateCollection", {"CollectionId": "c"})
    with pytest.raises(InvalidParameterException, match=r"(?i)facematchthreshold"):
        fake_pipe.call(
            "SearchFaces", {"CollectionId": "c", "FaceId": FACE_ID, "FaceMatchThreshold": threshold}
        )


def test_tag_key_with_lone_surrogate_is_invalid_parameter(fake_pipe: FacePipe) -> None:
    with pytest.raises(InvalidParameterException, match="Unicode") as caught:
        fake_pipe.call("CreateCollection", {"CollectionId": "c", "Tags": {"k\ud800": "v"}})
    caught.value.message.encode("utf-8")  # the message itself is printable UTF-8


def test_tag_patterns_use_unicode_classes(fake_pipe: FacePipe) -> None:
    with pytest.raises(InvalidParameterException, match="regular expression pattern"):
        fake_pipe.call("CreateCollection", {"CollectionId": "c", "Tags": {"aws:reserved": "v"}})
    created = fake_pipe.call("CreateCollection", {"CollectionId": "c", "Tags": {"équipe 1": "Zoë"}})
    assert created["StatusCode"] == 200


@pytest.mark.parametrize("threshold", [Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity")])
def test_non_finite_decimal_threshold_is_invalid_parameter(fake_pipe: FacePipe, threshold: Decimal) -> None:
    fake_pipe.call("CreateCollection", {"CollectionId": "c"})
    with pytest.raises(InvalidParameterException, match=r"(?i)usermatchthreshold.*finite"):
        fake_pipe.call(
            "AssociateFaces",
            {"CollectionId": "c", "UserId": "u", "FaceIds": [FACE_ID], "UserMatchThreshold": threshold},
        )


def test_decimal_threshold_out_of_range_is_invalid_parameter(fake_pipe: FacePipe) -> None:
    with pytest.raises(InvalidParameterException, match=r"(?i)facematchthreshold"):
        fake_pipe.call(
            "SearchFaces", {"CollectionId": "c", "FaceId": FACE_ID, "FaceMatchThreshold": Decimal("1000")}
        )


def test_image_bytes_take_what_botocore_takes(fake_pipe: FacePipe) -> None:
    assert image_bytes(fake_pipe.settings, {"Bytes": "abc"}) == b"abc"
    assert image_bytes(fake_pipe.settings, {"Bytes": io.BytesIO(b"\xff\xd8")}) == b"\xff\xd8"
    assert image_bytes(fake_pipe.settings, {"Bytes": bytearray(b"xy")}) == b"xy"
    with pytest.raises(InvalidParameterException, match=r"Image\.Bytes"):
        image_bytes(fake_pipe.settings, {"Bytes": 12})
    with pytest.raises(InvalidParameterException, match=r"Image\.Bytes"):
        image_bytes(fake_pipe.settings, {"Bytes": "\ud800"})


@pytest.mark.parametrize("key", ["abc", 10**30, -1, True])
def test_forged_list_faces_token_is_invalid_pagination_token(fake_pipe: FacePipe, key: object) -> None:
    fake_pipe.call("CreateCollection", {"CollectionId": "c"})
    with fake_pipe.store.read() as tx:
        scope = tx.collection("c").id
    token = encode_token("ListFaces", scope, key)  # type: ignore[arg-type]
    with pytest.raises(InvalidPaginationTokenException):
        fake_pipe.call("ListFaces", {"CollectionId": "c", "NextToken": token})


def test_a_million_face_ids_are_refused_at_once_with_a_short_message(fake_pipe: FacePipe) -> None:
    fake_pipe.call("CreateCollection", {"CollectionId": "c"})
    started = time.perf_counter()
    with pytest.raises(InvalidParameterException) as caught:
        fake_pipe.call("DeleteFaces", {"CollectionId": "c", "FaceIds": [FACE_ID] * 1_000_000})
    assert time.perf_counter() - started < 1.0
    message = caught.value.message
    assert message.startswith("1 validation error detected: Value '[")
    assert message.endswith(
        "at 'faceIds' failed to satisfy constraint: Member must have length less than or equal to 4096"
    )
    assert len(message) < 500


def test_many_violations_are_counted_not_all_spelled_out(fake_pipe: FacePipe) -> None:
    fake_pipe.call("CreateCollection", {"CollectionId": "c"})
    with pytest.raises(InvalidParameterException) as caught:
        fake_pipe.call("DeleteFaces", {"CollectionId": "c", "FaceIds": ["bad"] * 4000})
    message = caught.value.message
    assert message.startswith("4000 validation errors detected: Value 'bad' at 'faceIds.1.member' failed")
    assert message.endswith(f"; ... and {4000 - MAX_REPORTED} more")
    assert message.count("failed to satisfy constraint") == MAX_REPORTED


@pytest.mark.parametrize(
    ("operation", "params", "expected"),
    [
        (
            "DetectFaces",
            {"Image": {"Bytes": b""}},
            "Value '' at 'image.bytes' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ),
        (
            "DetectFaces",
            {"Image": {"Bytes": 12}},
            "Value '12' at 'image.bytes' failed to satisfy constraint: Member must be of type binary data",
        ),
        (
            "CreateCollection",
            {},
            "Value null at 'collectionId' failed to satisfy constraint: Member must not be null",
        ),
        (
            "DeleteFaces",
            {"CollectionId": "c", "FaceIds": [1, True]},
            "Value '1' at 'faceIds.1.member' failed to satisfy constraint: Member must be of type string; "
            "Value 'true' at 'faceIds.2.member'",
        ),
    ],
)
def test_messages_show_values_as_aws_does_never_python_reprs(
    fake_pipe: FacePipe, operation: str, params: dict[str, object], expected: str
) -> None:
    with pytest.raises(InvalidParameterException) as caught:
        fake_pipe.call(operation, params)
    assert expected in caught.value.message
    assert_no_python_repr(caught.value.message)


def test_show_value_renders_only_what_it_shows() -> None:
    assert show_value(b"") == ""
    assert show_value(None) == "null"
    assert show_value({"k": [1, "a"]}) == "{k=[1, a]}"
    huge = ["x" * 10] * 1_000_000
    started = time.perf_counter()
    shown = show_value(huge)
    assert time.perf_counter() - started < 0.05
    assert shown.endswith("...") and len(shown) <= 203
