"""handle_request: the JSON 1.1 protocol without HTTP (what local mode and the server both use)."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from botocore.model import ServiceModel
from botocore.parsers import create_parser

from pipeline.protocol.handler import CONTENT_TYPE, handle_request
from pipeline.service import rekognition_model
from tests.support.memory_service import MemoryService

T = "RekognitionService."


def body_of(response_body: bytes) -> dict:
    decoded = json.loads(response_body)
    assert isinstance(decoded, dict)
    return decoded


def parse_like_boto3(operation: str, status: int, headers: dict[str, str], body: bytes) -> dict:
    """What botocore's own JSON parser makes of a response (as boto3 would see it)."""
    model: ServiceModel = rekognition_model()
    parser = create_parser("json")
    op = model.operation_model(operation)
    return parser.parse(
        {"status_code": status, "headers": {k.lower(): v for k, v in headers.items()}, "body": body},
        op.output_shape,
    )


def test_success_has_protocol_headers_and_output_shape(memory_service: MemoryService) -> None:
    r = handle_request(memory_service, T + "CreateCollection", b'{"CollectionId": "c1"}', request_id="rid-1")
    assert r.status == 200
    assert r.headers["Content-Type"] == CONTENT_TYPE
    assert r.headers["x-amzn-RequestId"] == "rid-1"
    assert body_of(r.body)["CollectionArn"].endswith("collection/c1")
    assert memory_service.calls == [("CreateCollection", {"CollectionId": "c1"})]


def test_request_id_generated_when_not_given(memory_service: MemoryService) -> None:
    a = handle_request(memory_service, T + "ListCollections", b"{}")
    b = handle_request(memory_service, T + "ListCollections", b"{}")
    assert a.headers["x-amzn-RequestId"] and a.headers["x-amzn-RequestId"] != b.headers["x-amzn-RequestId"]


def test_timestamps_are_epoch_seconds_and_parse_back(memory_service: MemoryService) -> None:
    handle_request(memory_service, T + "CreateCollection", b'{"CollectionId": "c1"}')
    r = handle_request(memory_service, T + "DescribeCollection", b'{"CollectionId": "c1"}')
    created = body_of(r.body)["CreationTimestamp"]
    assert created == pytest.approx(1714564800.25)
    parsed = parse_like_boto3("DescribeCollection", r.status, r.headers, r.body)
    assert parsed["CreationTimestamp"] == memory_service.collections["c1"]


def test_blob_is_base64_decoded_for_the_service(memory_service: MemoryService) -> None:
    raw = b"\xff\x00\xff" + bytes(range(256))
    body = json.dumps({"Image": {"Bytes": base64.b64encode(raw).decode()}}).encode()
    r = handle_request(memory_service, T + "DetectFaces", body)
    assert r.status == 200
    assert memory_service.calls[-1] == ("DetectFaces", {"Image": {"Bytes": raw}})
    assert len(body_of(r.body)["FaceDetails"]) == 3


def test_service_error_becomes_error_shape(memory_service: MemoryService) -> None:
    r = handle_request(memory_service, T + "DescribeCollection", b'{"CollectionId": "nope"}')
    assert r.status == 400
    assert r.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert body_of(r.body) == {
        "__type": "ResourceNotFoundException",
        "Message": "The collection id: nope does not exist",
    }
    assert r.headers["x-amzn-RequestId"]


@pytest.mark.parametrize(
    "target",
    [None, "", "RekognitionService.Nope", "Bogus", "OtherService.ListCollections", "RekognitionService."],
)
def test_unknown_or_missing_target(memory_service: MemoryService, target: str | None) -> None:
    r = handle_request(memory_service, target, b"{}")
    assert r.status == 400
    assert body_of(r.body)["__type"] == "UnknownOperationException"
    assert "X-Amz-Target" in body_of(r.body)["Message"]
    assert memory_service.calls == []


def test_modelled_but_unimplemented_operation(memory_service: MemoryService) -> None:
    r = handle_request(memory_service, T + "StartFaceSearch", b"{}")
    assert r.status == 400
    assert body_of(r.body) == {
        "__type": "UnknownOperationException",
        "Message": "Operation StartFaceSearch is not implemented by this server.",
    }


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b"{", "SerializationException", "not valid JSON"),
        (b"\xff\xfe{}", "SerializationException", "not valid JSON"),
        (b"null", "SerializationException", "JSON object"),
        (b"[]", "SerializationException", "JSON object"),
        (b'"x"', "SerializationException", "JSON object"),
        (
            b'{"CollectionId": 5}',
            "SerializationException",
            "Expected a string for CollectionId, got a number",
        ),
        (
            b'{"CollectionId": ["a"]}',
            "SerializationException",
            "Expected a string for CollectionId, got an array",
        ),
        (b'{"CollectionId": "c", "Tags": []}', "SerializationException", "Expected an object for Tags"),
        (b'{"CollectionId": "c", "Tags": {"k": 1}}', "SerializationException", "Tags.k"),
        (
            b'{"CollectionId": "c", "Colour": "red"}',
            "InvalidParameterException",
            "Unknown parameter 'Colour'",
        ),
    ],
)
def test_malformed_bodies_are_client_errors(
    memory_service: MemoryService, body: bytes, code: str, words: str
) -> None:
    r = handle_request(memory_service, T + "CreateCollection", body)
    assert r.status == 400
    answer = body_of(r.body)
    assert answer["__type"] == code
    assert words in answer["Message"]
    assert memory_service.calls == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"Image": {"Bytes": "!!notbase64"}}', "Image.Bytes is not valid base64"),
        (b'{"Image": {"Bytes": "abc"}}', "Image.Bytes is not valid base64"),
        (b'{"Image": {"Bytes": 12}}', "Expected a base64 string for Image.Bytes"),
        (b'{"Image": "x"}', "Expected an object for Image"),
        (b'{"Image": {"Bytes": "AAAA"}, "Attributes": "ALL"}', "Expected an array for Attributes"),
        (b'{"Image": {"Bytes": "AAAA"}, "Attributes": [true]}', "Attributes[0]"),
    ],
)
def test_bad_blob_and_nesting(memory_service: MemoryService, body: bytes, words: str) -> None:
    r = handle_request(memory_service, T + "DetectFaces", body)
    assert r.status == 400
    assert body_of(r.body)["__type"] == "SerializationException"
    assert words in body_of(r.body)["Message"]


def test_number_types_are_checked(memory_service: MemoryService) -> None:
    model = rekognition_model().operation_model("SearchFaces").input_shape
    assert model.members["MaxFaces"].type_name == "integer"
    memory_service.operations = [*MemoryService.operations, "SearchFaces"]
    for bad in (b'"3"', b"2.5", b"true"):
        body = b'{"CollectionId": "c", "FaceId": "f", "MaxFaces": ' + bad + b"}"
        r = handle_request(memory_service, T + "SearchFaces", body)
        assert r.status == 400, bad
        assert "Expected an integer for MaxFaces" in body_of(r.body)["Message"]
    for bad in (b'"80"', b"false"):
        body = b'{"CollectionId": "c", "FaceId": "f", "FaceMatchThreshold": ' + bad + b"}"
        r = handle_request(memory_service, T + "SearchFaces", body)
        assert "Expected a number for FaceMatchThreshold" in body_of(r.body)["Message"]
    assert memory_service.calls == []


def test_null_members_count_as_absent_and_empty_body_as_empty_object(memory_service: MemoryService) -> None:
    r = handle_request(memory_service, T + "ListCollections", b'{"NextToken": null}')
    assert r.status == 200
    r = handle_request(memory_service, T + "ListCollections", b"")
    assert r.status == 200
    assert memory_service.calls == [("ListCollections", {}), ("ListCollections", {})]


def test_unexpected_exception_is_500_without_details(
    memory_service: MemoryService, caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps({"Image": {"Bytes": base64.b64encode(b"boom").decode()}}).encode()
    with caplog.at_level(logging.ERROR, logger="pipeline.protocol"):
        r = handle_request(memory_service, T + "DetectFaces", body, request_id="rid-500")
    assert r.status == 500
    answer = body_of(r.body)
    assert answer["__type"] == "InternalServerError"
    assert "simulated bug" not in answer["Message"] and "Traceback" not in answer["Message"]
    assert "rid-500" in answer["Message"]
    assert "simulated bug" in caplog.text  # the operator's log has the details


def test_output_members_outside_the_shape_are_dropped() -> None:
    class Extra(MemoryService):
        def call(self, operation: str, params: dict) -> dict:
            return {"CollectionIds": ["a"], "ResponseMetadata": {"x": 1}, "Secret": "internal"}

    r = handle_request(Extra(), T + "ListCollections", b"{}")
    assert body_of(r.body) == {"CollectionIds": ["a"]}


@pytest.mark.parametrize(
    ("target", "body", "words"),
    [
        ("CreateCollection", b"[" * 100_000, "nested too deeply"),
        ("CreateCollection", b'{"CollectionId": NaN}', "NaN is not a JSON number"),
        ("SearchFaces", b'{"CollectionId": "c", "FaceId": "f", "FaceMatchThreshold": Infinity}', "Infinity"),
        (
            "SearchFaces",
            b'{"CollectionId": "c", "FaceId": "f", "FaceMatchThreshold": 1e999}',
            "finite number",
        ),
        (
            "SearchFaces",
            b'{"CollectionId": "c", "FaceId": "f", "FaceMatchThreshold": ' + b"9" * 400 + b"}",
            "finite",
        ),
        ("CreateCollection", b'{"CollectionId": "c", "Tags": {"\\ud800": "v"}}', "lone surrogate"),
        ("CreateCollection", b'{"CollectionId": "c", "Tags": {"k": "\\udfff"}}', "lone surrogate"),
        ("CreateCollection", b'{"CollectionId": "\\ud800x"}', "lone surrogate"),
    ],
)
def test_json_the_service_must_never_see(
    memory_service: MemoryService, target: str, body: bytes, words: str
) -> None:
    """Deep nesting, non-finite numbers and unpaired surrogates are refused before the service."""
    memory_service.operations = [*MemoryService.operations, "SearchFaces"]
    r = handle_request(memory_service, T + target, body)
    assert r.status == 400
    assert body_of(r.body)["__type"] == "SerializationException"
    assert words in body_of(r.body)["Message"]
    assert memory_service.calls == []
