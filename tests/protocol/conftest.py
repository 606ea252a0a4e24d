"""Fixtures for the protocol tests: an in-memory service and a live server on a loopback port."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar
from urllib.parse import urlsplit

import boto3
import pytest
import uvicorn
from botocore.config import Config
from botocore.validate import ParamValidator

from pipeline.errors import (
    InvalidParameterException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
)
from pipeline.protocol.app import create_app
from pipeline.protocol.connections import ConnectionLimits
from pipeline.protocol.server import run_server, uvicorn_server
from pipeline.protocol.sigv4 import SigV4Verifier
from pipeline.service import rekognition_model

ACCESS_KEY_ID = "AKIDTESTPROTOCOL"
SECRET = "protocol-test-secret"


class MemoryService:
    """A small in-memory service with the FacePipe contract (call/operations) for protocol tests.

    It keeps collections in a dict and records every call, so tests can check what the protocol
    layer handed over (types, decoded blobs) and that rejected requests never reached it.
    """

    operations: ClassVar[list[str]] = [
        "CreateCollection",
        "DeleteCollection",
        "DescribeCollection",
        "ListCollections",
        "DetectFaces",
    ]

    def __init__(self) -> None:
        self.collections: dict[str, datetime] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        # like the real service, check the params against botocore's model first
        report = ParamValidator().validate(params, rekognition_model().operation_model(operation).input_shape)
        if report.has_errors():
            raise InvalidParameterException(report.generate_report())
        with self.lock:
            self.calls.append((operation, params))
            if operation == "CreateCollection":
                cid = params["CollectionId"]
                if not isinstance(cid, str) or not cid or len(cid) > 255:
                    raise InvalidParameterException("CollectionId must be 1-255 characters.")
                if cid in self.collections:
                    raise ResourceAlreadyExistsException(f"The collection id: {cid} already exists")
                self.collections[cid] = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=timezone.utc)
                return {
                    "StatusCode": 200,
                    "CollectionArn": f"aws:rekognition:us-east-1:000000000000:collection/{cid}",
                    "FaceModelVersion": "7.0",
                }
            if operation == "DescribeCollection":
                cid = params["CollectionId"]
                if cid not in self.collections:
                    raise ResourceNotFoundException(f"The collection id: {cid} does not exist")
                return {
                    "FaceCount": 0,
                    "UserCount": 0,
                    "FaceModelVersion": "7.0",
                    "CreationTimestamp": self.collections[cid],
                    "CollectionARN": f"aws:rekognition:us-east-1:000000000000:collection/{cid}",
                }
            if operation == "DeleteCollection":
                cid = params["CollectionId"]
                if cid not in self.collections:
                    raise ResourceNotFoundException(f"The collection id: {cid} does not exist")
                del self.collections[cid]
                return {"StatusCode": 200}
            if operation == "ListCollections":
                ids = sorted(self.collections)
                return {"CollectionIds": ids, "FaceModelVersions": ["7.0"] * len(ids)}
            if operation == "DetectFaces":
                data = params["Image"]["Bytes"]
                if not isinstance(data, bytes):
                    raise InvalidParameterException("Image.Bytes must be bytes")
                if data == b"boom":
                    raise RuntimeError("simulated bug")
                # one "face" per byte value 0xFF, so tests can see the exact bytes arrived
                return {
                    "FaceDetails": [
                        {"Confidence": 99.5, "BoundingBox": {"Width": len(data) / 1000}}
                        for _ in range(data.count(b"\xff"))
                    ]
                }
            raise AssertionError(f"unexpected operation {operation}")


def raw_post(
    url: str, body: bytes, headers: dict[str, str], path: str = "/", method: str = "POST"
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request without any client library: (status, lower-case headers, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    service: Any
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def start_server(
    service: Any,
    verifier: SigV4Verifier | None,
    max_body_bytes: int = 1 << 20,
    limits: ConnectionLimits | None = None,
    **app_options: Any,
) -> LiveServer:
    """The app on a free loopback port, with `facepipe serve`'s connection layer and ``limits``."""
    limits = limits or ConnectionLimits()
    app = create_app(
        service, verifier, max_body_bytes=max_body_bytes, threads=4, limits=limits, **app_options
    )
    port = free_port()
    server, _ = uvicorn_server(app, "127.0.0.1", port, limits)
    thread = threading.Thread(target=run_server, args=(server,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{port}", service, server, thread)


@pytest.fixture()
def memory_service() -> MemoryService:
    return MemoryService()


@pytest.fixture()
def open_server(memory_service: MemoryService) -> Iterator[LiveServer]:
    """A server without authentication on a memory service."""
    live = start_server(memory_service, None)
    yield live
    live.stop()


@pytest.fixture()
def signed_server(memory_service: MemoryService) -> Iterator[LiveServer]:
    """A server that verifies SigV4 against ACCESS_KEY_ID/SECRET."""
    live = start_server(memory_service, SigV4Verifier({ACCESS_KEY_ID: SECRET}))
    yield live
    live.stop()


def rekognition_client(url: str, key: str = ACCESS_KEY_ID, secret: str = SECRET, **config: Any) -> Any:
    return boto3.client(
        "rekognition",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(**{"retries": {"max_attempts": 1}, **config}),
    )
