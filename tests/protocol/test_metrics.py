"""``facepipe serve --metrics``: GET /metrics in the Prometheus text format, on the real service."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.cli.serve import build_parser, read_config_file
from pipeline.config import Settings
from pipeline.protocol.sigv4 import SigV4Verifier
from pipeline.service import FacePipe
from tests.support.memory_service import MemoryService
from tests.support.server import (
    ACCESS_KEY_ID,
    SECRET,
    ThreadServer,
    raw_request,
    rekognition_client,
    serve_service_in_thread,
)


@pytest.fixture(scope="module")
def metrics_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    """A signed server with --metrics on the real service (SQLite store, real models)."""
    fp = FacePipe(Settings(data_dir=tmp_path_factory.mktemp("facepipe-metrics")))
    live = serve_service_in_thread(
        fp, SigV4Verifier({ACCESS_KEY_ID: SECRET}), max_body_bytes=16 << 20, metrics=True
    )
    yield live
    live.stop()
    fp.close()


def scrape(url: str, host: str | None = None) -> dict[str, Any]:
    """The samples of GET /metrics by (name, labels as a sorted tuple) -> value, parsed."""
    headers = {"Host": host} if host else {}
    status, response_headers, body = raw_request(url, b"", headers, path="/metrics", method="GET")
    assert status == 200, body
    assert response_headers["content-type"].startswith("text/plain")
    samples: dict[Any, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_off_by_default_is_an_unknown_route(memory_service: MemoryService) -> None:
    live = serve_service_in_thread(memory_service, None)
    try:
        status, headers, body = raw_request(live.url, b"", {}, path="/metrics", method="GET")
    finally:
        live.stop()
    assert status == 404
    assert json.loads(body)["__type"] == "UnknownOperationException" and headers["x-amzn-requestid"]


def test_scrape_counts_signed_calls_and_reads_the_store(
    metrics_server: ThreadServer, sample_images: Path
) -> None:
    client = rekognition_client(metrics_server.url, read_timeout=60)
    client.create_collection(CollectionId="metrics-people")
    indexed = client.index_faces(
        CollectionId="metrics-people", Image={"Bytes": (sample_images / "t1.jpg").read_bytes()}
    )
    faces = len(indexed["FaceRecords"])
    assert faces >= 2
    # two different requests: the same one twice within a second would be a replay (throttled)
    client.list_collections()
    client.list_collections(MaxResults=10)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.describe_collection(CollectionId="no-such-collection")
    # a search brings this process's index of the collection up to date: it holds it, lag 0
    face_id = indexed["FaceRecords"][0]["Face"]["FaceId"]
    client.search_faces(CollectionId="metrics-people", FaceId=face_id)

    samples = scrape(metrics_server.url)  # no signature: scrapers do not sign

    def requests(operation: str, status: str, error_code: str = "") -> float:
        labels = (("error_code", error_code), ("operation", operation), ("status", status))
        return samples.get(("facepipe_requests_total", labels), 0.0)

    assert requests("ListCollections", "200") == 2
    assert requests("IndexFaces", "200") == 1
    assert requests("DescribeCollection", "400", "ResourceNotFoundException") == 1
    assert requests("DescribeCollection", "200") == 0
    list_count = samples[("facepipe_request_seconds_count", (("operation", "ListCollections"),))]
    assert list_count == 2
    slowest_bucket = (("le", "+Inf"), ("operation", "IndexFaces"))
    assert samples[("facepipe_request_seconds_bucket", slowest_bucket)] == 1
    assert samples[("facepipe_request_seconds_sum", (("operation", "IndexFaces"),))] > 0
    assert samples[("facepipe_collection_faces", (("collection", "metrics-people"),))] == faces
    assert samples[("facepipe_index_lag", (("collection", "metrics-people"),))] == 0
    assert not any(name == "facepipe_store_pool_connections" for name, _ in samples)  # SQLite: none

    # faces indexed since the last search are changes the held index has not applied yet
    more = client.index_faces(
        CollectionId="metrics-people", Image={"Bytes": (sample_images / "Tom_Hanks_54745.png").read_bytes()}
    )
    added = len(more["FaceRecords"])
    assert added == 1
    samples = scrape(metrics_server.url)
    assert samples[("facepipe_collection_faces", (("collection", "metrics-people"),))] == faces + added
    assert samples[("facepipe_index_lag", (("collection", "metrics-people"),))] == added
    client.search_faces(CollectionId="metrics-people", FaceId=face_id)
    assert scrape(metrics_server.url)[("facepipe_index_lag", (("collection", "metrics-people"),))] == 0
    # scrapes are not API requests: they count nowhere
    assert requests("ListCollections", "200") == 2


def test_unknown_targets_share_one_label(metrics_server: ThreadServer) -> None:
    """A client cannot grow the label set: targets that name no operation count as "unknown"."""
    for i in range(3):
        raw_request(metrics_server.url, b"{}", {"X-Amz-Target": f"RekognitionService.Nope{i}"})
    operations = {dict(labels).get("operation") for name, labels in scrape(metrics_server.url)}
    assert "unknown" in operations
    assert not any(str(op).startswith("Nope") or "RekognitionService" in str(op) for op in operations)


def test_metrics_obey_allowed_hosts(memory_service: MemoryService) -> None:
    live = serve_service_in_thread(memory_service, None, allowed_hosts=["127.0.0.1"], metrics=True)
    try:
        scrape(live.url, host="127.0.0.1")  # answered (200) for an allowed host
        status, _, body = raw_request(live.url, b"", {"Host": "evil.example"}, path="/metrics", method="GET")
    finally:
        live.stop()
    assert status == 400 and json.loads(body)["__type"] == "AccessDeniedException"  # as the API answers


def test_a_body_on_metrics_is_not_read(metrics_server: ThreadServer) -> None:
    """A scrape that declares a huge body is answered at once and its connection closed."""
    parts = urlsplit(metrics_server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000\r\n\r\n")
        sock.sendall(b"A" * 100)
        started = time.monotonic()
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
        assert time.monotonic() - started < 3
    assert received.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in received.lower() and b"facepipe_requests_total" in received


def test_the_option_and_the_config_key(tmp_path: Path) -> None:
    assert build_parser().parse_args(["--metrics"]).metrics is True
    assert build_parser().parse_args([]).metrics is None  # off unless asked: the config file decides
    config = tmp_path / "facepipe.ini"
    config.write_text("[server]\nmetrics = true\n")
    assert read_config_file(config) == {"metrics": True}
