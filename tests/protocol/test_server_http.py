"""The HTTP server end to end with real boto3, the real AWS CLI and raw HTTP, on an in-memory service."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import random
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from pipeline.protocol.sigv4 import SigV4Verifier
from tests.support.cli import AWS_CLI, aws_env, run_command
from tests.support.memory_service import MemoryService
from tests.support.server import (
    ACCESS_KEY_ID,
    SECRET,
    ThreadServer,
    raw_request,
    rekognition_client,
    serve_service_in_thread,
)


def target(op: str) -> dict[str, str]:
    return {"X-Amz-Target": f"RekognitionService.{op}", "Content-Type": "application/x-amz-json-1.1"}


def test_boto3_round_trip_and_modelled_errors(open_server: ThreadServer) -> None:
    client = rekognition_client(open_server.url)
    created = client.create_collection(CollectionId="alpha")
    assert created["StatusCode"] == 200
    assert created["ResponseMetadata"]["RequestId"]
    described = client.describe_collection(CollectionId="alpha")
    assert described["CreationTimestamp"] == open_server.service.collections["alpha"]
    assert client.list_collections()["CollectionIds"] == ["alpha"]
    with pytest.raises(client.exceptions.ResourceAlreadyExistsException, match="alpha already exists"):
        client.create_collection(CollectionId="alpha")
    with pytest.raises(client.exceptions.ResourceNotFoundException) as info:
        client.delete_collection(CollectionId="beta")
    assert info.value.response["Error"] == {
        "Code": "ResourceNotFoundException",
        "Message": "The collection id: beta does not exist",
    }
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    faces = client.detect_faces(Image={"Bytes": b"\xff\x01\xff"})["FaceDetails"]
    assert len(faces) == 2
    assert open_server.service.calls[-1] == ("DetectFaces", {"Image": {"Bytes": b"\xff\x01\xff"}})


def test_unparameterised_client_gets_clean_errors(open_server: ThreadServer) -> None:
    client = rekognition_client(open_server.url, parameter_validation=False)
    with pytest.raises(ClientError) as info:
        client.create_collection(CollectionId=5)
    assert info.value.response["Error"]["Code"] == "SerializationException"
    assert "CollectionId" in info.value.response["Error"]["Message"]
    with pytest.raises(client.exceptions.InvalidParameterException, match="1-255"):
        client.create_collection(CollectionId="x" * 300)
    with pytest.raises(ClientError) as info:
        client.start_face_search(CollectionId="a", Video={"S3Object": {"Bucket": "b", "Name": "n"}})
    assert info.value.response["Error"]["Code"] == "UnknownOperationException"


def test_aws_cli_against_the_server(open_server: ThreadServer, tmp_path: Path) -> None:
    env = aws_env()
    base = [*AWS_CLI, "rekognition", "--endpoint-url", open_server.url, "--output", "json"]
    ok = run_command([*base, "create-collection", "--collection-id", "cli"], env)
    assert ok.status == 0, ok.stderr
    assert json.loads(ok.stdout)["CollectionArn"].endswith("collection/cli")
    image = tmp_path / "face.bin"
    image.write_bytes(b"\xff\xff\xff\x00")
    detected = run_command([*base, "detect-faces", "--image-bytes", f"fileb://{image}"], env)
    assert detected.status == 0, detected.stderr
    assert len(json.loads(detected.stdout)["FaceDetails"]) == 3
    missing = run_command([*base, "describe-collection", "--collection-id", "nope"], env)
    assert missing.status == 255 and missing.stdout == ""  # AWS CLI v1: service errors exit 255
    assert (
        "An error occurred (ResourceNotFoundException) when calling the DescribeCollection operation: The collection id: nope does not exist"
        in missing.stderr
    )


def test_auth_accepts_signed_and_rejects_the_rest(signed_server: ThreadServer) -> None:
    url = signed_server.url
    assert rekognition_client(url).create_collection(CollectionId="signed")["StatusCode"] == 200
    cases = [
        (rekognition_client(url, signature_version=UNSIGNED), "MissingAuthenticationTokenException", 403),
        (rekognition_client(url, secret="wrong-secret"), "InvalidSignatureException", 403),
        (rekognition_client(url, key="AKIDUNKNOWN"), "UnrecognizedClientException", 403),
    ]
    for client, code, status in cases:
        with pytest.raises(ClientError) as info:
            client.delete_collection(CollectionId="signed")
        assert info.value.response["Error"]["Code"] == code
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
        assert info.value.response["ResponseMetadata"]["RequestId"]
    assert "signed" in signed_server.service.collections  # nothing got through


def test_expired_signature_is_refused(memory_service: MemoryService) -> None:
    ten_minutes_ahead = SigV4Verifier({ACCESS_KEY_ID: SECRET}, clock=lambda: time.time() + 600)
    live = serve_service_in_thread(memory_service, ten_minutes_ahead)
    try:
        with pytest.raises(ClientError) as info:
            rekognition_client(live.url).list_collections()
        assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
        assert info.value.response["Error"]["Message"].startswith("Signature expired:")
    finally:
        live.stop()
    assert memory_service.calls == []


def test_aws_cli_unsigned_and_unknown_key(signed_server: ThreadServer) -> None:
    base = [*AWS_CLI, "rekognition", "list-collections", "--endpoint-url", signed_server.url]
    unsigned = run_command([*base, "--no-sign-request"], aws_env())
    assert unsigned.status == 255 and "(MissingAuthenticationTokenException)" in unsigned.stderr
    unknown = run_command(base, aws_env(AWS_ACCESS_KEY_ID="AKIDUNKNOWN", AWS_SECRET_ACCESS_KEY="nope"))
    assert unknown.status == 255 and "(UnrecognizedClientException)" in unknown.stderr
    good = run_command(base, aws_env(AWS_ACCESS_KEY_ID=ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET))
    assert good.status == 0, good.stderr
    assert json.loads(good.stdout)["CollectionIds"] == [] and good.stderr == ""


def test_body_size_cap(memory_service: MemoryService) -> None:
    live = serve_service_in_thread(memory_service, None, max_body_bytes=10_000)
    try:
        big = json.dumps({"Image": {"Bytes": base64.b64encode(b"\xff" * 20_000).decode()}}).encode()
        status, headers, body = raw_request(live.url, big, target("DetectFaces"))
        assert status == 413
        assert json.loads(body)["__type"] == "RequestEntityTooLargeException"
        assert "10000 bytes" in json.loads(body)["Message"]
        assert headers["x-amzn-errortype"] == "RequestEntityTooLargeException" and headers["x-amzn-requestid"]
        client = rekognition_client(live.url)
        with pytest.raises(ClientError) as info:
            client.detect_faces(Image={"Bytes": b"\xff" * 20_000})
        assert info.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
        small = json.dumps({"Image": {"Bytes": base64.b64encode(b"\xff" * 100).decode()}}).encode()
        assert raw_request(live.url, small, target("DetectFaces"))[0] == 200
    finally:
        live.stop()
    assert [op for op, _ in memory_service.calls] == ["DetectFaces"]


def test_health_and_unknown_routes(open_server: ThreadServer) -> None:
    status, headers, body = raw_request(open_server.url, b"", {}, path="/health", method="GET")
    assert status == 200 and json.loads(body)["status"] == "ok" and headers["x-amzn-requestid"]
    for method, path, expected in (("GET", "/", 405), ("POST", "/elsewhere", 404), ("GET", "/nothing", 404)):
        status, headers, body = raw_request(
            open_server.url, b"{}", target("ListCollections"), path=path, method=method
        )
        assert status == expected
        assert json.loads(body)["__type"] == "UnknownOperationException"
        assert headers["x-amzn-requestid"]


@pytest.mark.parametrize(
    ("method", "path", "status", "framing"),
    [
        ("GET", "/health", 200, "Content-Length: 100000000"),
        ("POST", "/elsewhere", 404, "Content-Length: 100000000"),
        ("GET", "/", 405, "Content-Length: 100000000"),
        ("GET", "/health", 200, "Transfer-Encoding: chunked"),
    ],
)
def test_routes_that_read_no_body_close_instead_of_draining_it(
    open_server: ThreadServer, method: str, path: str, status: int, framing: str
) -> None:
    """A request with a body to /health or an unknown route is answered and its connection closed
    at once: the server does not read and discard a body of any declared size to keep it open."""
    parts = urlsplit(open_server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n\r\n".encode())
        sock.sendall(b"1000\r\n" + b"A" * 100 if "chunked" in framing else b"A" * 100)
        started = time.monotonic()
        received = b""
        with contextlib.suppress(ConnectionResetError):  # closed with unread bytes: a reset
            while chunk := sock.recv(65536):
                received += chunk
        assert time.monotonic() - started < 3
    assert received.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"connection: close" in received.lower()
    # without a body, the health check keeps its connection (load balancers' keep-alive probes)
    connection = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=5)
    try:
        for _ in range(2):
            connection.request("GET", "/health")
            answer = connection.getresponse()
            assert answer.status == 200 and json.loads(answer.read())["status"] == "ok"
            assert answer.getheader("connection") is None and connection.sock is not None
    finally:
        connection.close()


def test_access_log_is_one_json_line_per_request(
    open_server: ThreadServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = rekognition_client(open_server.url)
    with caplog.at_level(logging.INFO, logger="pipeline.protocol.access"):
        client.list_collections()
        with pytest.raises(ClientError):
            client.describe_collection(CollectionId="none")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "pipeline.protocol.access"]
    assert [(x["operation"], x["status"], x["error"]) for x in lines] == [
        ("ListCollections", 200, None),
        ("DescribeCollection", 400, "ResourceNotFoundException"),
    ]
    assert all(x["latency_ms"] >= 0 and x["request_id"] for x in lines)


def test_concurrent_clients(open_server: ThreadServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    client = rekognition_client(open_server.url)

    def create(i: int) -> int:
        return int(client.create_collection(CollectionId=f"c{i}")["StatusCode"])

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(create, range(40))) == [200] * 40
    assert len(client.list_collections()["CollectionIds"]) == 40


def test_fuzzed_requests_never_5xx_and_leave_the_store_unchanged(open_server: ThreadServer) -> None:
    client = rekognition_client(open_server.url)
    client.create_collection(CollectionId="keep")
    before = dict(open_server.service.collections)
    rng = random.Random(20240501)
    ops = ["CreateCollection", "DeleteCollection", "DetectFaces", "IndexFaces", "Nope", ""]
    members = ["CollectionId", "Image", "Bytes", "MaxFaces", "Tags", "S3Object", "FaceIds"]
    values: list[object] = [
        None,
        5,
        -1,
        2.5,
        True,
        "",
        "x" * 3000,
        [],
        {},
        ["a"],
        {"Bytes": "!!"},
        {"Bytes": 5},
        {"Bytes": "AAAA"},
    ]
    statuses = []
    for _ in range(250):
        choice = rng.random()
        if choice < 0.3:
            body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 400)))
        elif choice < 0.7:
            doc = {rng.choice(members): rng.choice(values) for _ in range(rng.randrange(0, 4))}
            body = json.dumps(doc).encode()
        else:
            body = json.dumps(rng.choice(values)).encode()
        op = rng.choice(ops)
        headers = {
            "X-Amz-Target": f"RekognitionService.{op}" if rng.random() < 0.8 else op,
            "Content-Type": "application/x-amz-json-1.1",
        }
        status, response_headers, response_body = raw_request(open_server.url, body, headers)
        statuses.append(status)
        if status != 200:
            error = json.loads(response_body)
            assert (
                set(error) == {"__type", "Message"}
                and response_headers["x-amzn-errortype"] == error["__type"]
            )
    assert max(statuses) < 500
    assert open_server.service.collections == before
    assert statuses.count(200) < len(statuses)


def test_client_leaving_mid_body_is_no_internal_error(
    open_server: ThreadServer, caplog: pytest.LogCaptureFixture
) -> None:
    parts = urlsplit(open_server.url)
    with caplog.at_level(logging.INFO, logger="pipeline.protocol"):
        with socket.create_connection((parts.hostname, parts.port)) as sock:
            head = "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: RekognitionService.ListCollections\r\n"
            sock.sendall(f"{head}Content-Length: 1000\r\n\r\n{{".encode())
            time.sleep(0.3)
        deadline = time.monotonic() + 10
        while not any(r.name == "pipeline.protocol.access" for r in caplog.records):
            assert time.monotonic() < deadline, "the abandoned request was never logged"
            time.sleep(0.05)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "pipeline.protocol.access"]
    assert lines[0]["status"] < 500
