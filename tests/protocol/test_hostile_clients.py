"""The server under hostile clients: each test plays one attack, bounded in time and connections,
on loopback only, and checks the server stays cheap and keeps answering everyone else."""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from pipeline.cli.serve import read_config_file
from pipeline.protocol.app import LOCAL_HOSTS, host_allowed
from pipeline.protocol.connections import (
    AcceptErrorFilter,
    ConnectionLimits,
    ConnectionTracker,
    accept_backlog,
)
from pipeline.protocol.server import ServerOptions, connection_limits, parse_allowed_hosts
from pipeline.protocol.sigv4 import SigV4Verifier
from tests.support.memory_service import MemoryService
from tests.support.server import (
    ACCESS_KEY_ID,
    SECRET,
    ServeProcess,
    free_port,
    raw_request,
    rekognition_client,
    serve_service_in_thread,
)

MIB = 1 << 20


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture()
def server_process(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServeProcess]:
    """tests/protocol/hostile_server.py (``request.param``: its options) on a free port, healthy."""
    port = free_port()
    argv = [sys.executable, "-m", "tests.protocol.hostile_server", str(port), *getattr(request, "param", ())]
    server = ServeProcess.start(argv, port, tmp_path / "hostile-server.log", timeout_s=30)
    yield server
    server.stop(15)


def health_latency(url: str) -> float:
    started = time.monotonic()
    status, _, body = raw_request(url, b"", {}, path="/health", method="GET")
    assert status == 200 and json.loads(body)["status"] == "ok"
    return time.monotonic() - started


def head(length: int, extra: str = "", target: str = "DetectFaces") -> bytes:
    return (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: RekognitionService.{target}\r\n"
        f"Content-Type: application/x-amz-json-1.1\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


def read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response from ``sock`` (the whole of it: the server closes after refusals)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(rest) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(lines[0].split()[1]), headers, rest


def test_unsigned_slow_uploads_cost_almost_nothing(server_process: ServeProcess) -> None:
    """40 clients each declare a 15 MB body and send a first 64 KiB, unsigned or with an unknown
    key: each is answered at once, its connection closed before the body is read, and the server's
    memory stays flat; /health and signed clients keep being answered meanwhile."""
    pid = server_process.process.pid
    before = rss_bytes(pid)
    declared = 15_000_000
    chunk = b"A" * 65536
    sockets: list[socket.socket] = []
    refusals: list[tuple[int, str]] = []
    started = time.monotonic()
    try:
        for i in range(40):
            sock = socket.create_connection(("127.0.0.1", server_process.port), timeout=5)
            sockets.append(sock)
            extra = ""
            if i % 2:  # well formed, but an access key the server does not know
                extra = (
                    "X-Amz-Date: 20240101T000000Z\r\nAuthorization: AWS4-HMAC-SHA256 "
                    "Credential=AKIDNOBODY/20240101/us-east-1/rekognition/aws4_request, "
                    f"SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={'0' * 64}\r\n"
                )
            sock.sendall(head(declared, extra) + chunk)
            status, headers, body = read_response(sock, timeout=5)
            refusals.append((status, json.loads(body)["__type"]))
            assert headers.get("connection") == "close"
        answered_in = time.monotonic() - started
        # the rest of the body is not wanted: the server has closed (or resets) every connection
        for sock in sockets:
            sock.settimeout(5)
            with pytest.raises(OSError):
                for _ in range(declared // len(chunk)):
                    sock.sendall(chunk)
        assert health_latency(server_process.url) < 1.0
        assert rekognition_client(server_process.url).list_collections()["CollectionIds"] == []
        grown = rss_bytes(pid) - before
    finally:
        for sock in sockets:
            sock.close()
    assert refusals == [
        (403, "MissingAuthenticationTokenException" if i % 2 == 0 else "UnrecognizedClientException")
        for i in range(40)
    ]
    assert answered_in < 10
    assert grown < 100 * MIB, f"server RSS grew by {grown / MIB:.0f} MiB"


@pytest.mark.parametrize("server_process", [("--nofile", "256", "--header-timeout-s", "30")], indirect=True)
def test_idle_connection_flood_under_a_low_file_limit(server_process: ServeProcess) -> None:
    """600 idle connections against a server allowed 256 open files: the longest-idle ones are
    closed to make room, /health and signed clients keep being answered, and the log stays short."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(600):
            sock = socket.socket()
            sock.settimeout(5)
            sock.connect(("127.0.0.1", server_process.port))
            sockets.append(sock)
            if len(sockets) % 100 == 0:
                assert health_latency(server_process.url) < 2.0
        assert health_latency(server_process.url) < 2.0
        client = rekognition_client(server_process.url)
        client.create_collection(CollectionId="still-served")
        assert client.list_collections()["CollectionIds"] == ["still-served"]
        # most of the flood was closed by the server (the cap is half the file limit: 128)
        closed = 0
        for sock in sockets:
            sock.settimeout(0.01)
            try:
                closed += sock.recv(1) == b""
            except (TimeoutError, BlockingIOError):
                pass
            except OSError:
                closed += 1
        assert closed >= 600 - 128
    finally:
        for sock in sockets:
            sock.close()
    time.sleep(0.5)
    assert server_process.process.poll() is None
    log = server_process.output().splitlines(keepends=True)
    lines = [line for line in log if "Traceback" in line or "accept" in line]
    assert len(lines) <= 3, "".join(log[-20:])
    assert len(log) < 30


@pytest.mark.parametrize(
    "server_process", [("--header-timeout-s", "1", "--body-timeout-s", "1")], indirect=True
)
def test_slow_heads_idle_connections_and_slow_bodies_are_cut_off(server_process: ServeProcess) -> None:
    """A connection that sends nothing, one that sends its head a byte at a time, and a signed
    request whose body stalls are all closed within their deadlines."""
    idle = socket.create_connection(("127.0.0.1", server_process.port), timeout=5)
    slow = socket.create_connection(("127.0.0.1", server_process.port), timeout=5)
    started = time.monotonic()
    with pytest.raises(OSError):  # the server closes it mid-head, 1 s after accept
        for byte in head(10) * 3:
            slow.sendall(bytes([byte]))
            time.sleep(0.1)
    assert 0.9 < time.monotonic() - started < 3
    assert idle.recv(1) == b""  # closed by the server too
    body = json.dumps({"Image": {"Bytes": "AAAA" * 1000}}).encode()
    request = AWSRequest(
        method="POST",
        url=server_process.url + "/",
        data=body,
        headers={
            "X-Amz-Target": "RekognitionService.DetectFaces",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET), "rekognition", "us-east-1").add_auth(request)
    lines = [f"{k}: {v}" for k, v in request.headers.items()]
    text = f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{server_process.port}\r\n" + "\r\n".join(lines)
    stalled = socket.create_connection(("127.0.0.1", server_process.port), timeout=5)
    stalled.sendall(f"{text}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:100])
    started = time.monotonic()
    status, headers, answer = read_response(stalled, timeout=10)
    # deadline: 1 s + 4 kB at 64 KiB/s
    assert status == 408 and json.loads(answer)["__type"] == "RequestTimeoutException"
    assert 0.9 < time.monotonic() - started < 3
    assert headers["connection"] == "close"
    for sock in (idle, slow, stalled):
        sock.close()
    assert health_latency(server_process.url) < 1.0


def signed_over(url: str, signed: dict[str, str], body: bytes) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url + "/", data=body, headers=signed)
    SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET), "rekognition", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def test_signature_over_host_and_date_only_cannot_be_repurposed(memory_service: MemoryService) -> None:
    live = serve_service_in_thread(memory_service, SigV4Verifier({ACCESS_KEY_ID: SECRET}))
    try:
        rekognition_client(live.url).create_collection(CollectionId="precious")
        calls = len(memory_service.calls)
        body = b'{"CollectionId": "precious"}'
        headers = signed_over(live.url, {}, body)  # SignedHeaders=host;x-amz-date
        assert "SignedHeaders=host;x-amz-date," in headers["Authorization"]
        headers.update(
            {
                "X-Amz-Target": "RekognitionService.DeleteCollection",
                "Content-Type": "application/x-amz-json-1.1",
            }
        )
        status, _, answer = raw_request(live.url, body, headers)
        assert status == 403
        error = json.loads(answer)
        assert error["__type"] == "InvalidSignatureException"
        assert "must be a 'SignedHeader'" in error["Message"]
        assert len(memory_service.calls) == calls and "precious" in memory_service.collections
    finally:
        live.stop()


def test_a_replayed_request_is_refused_and_real_clients_still_work(memory_service: MemoryService) -> None:
    live = serve_service_in_thread(memory_service, SigV4Verifier({ACCESS_KEY_ID: SECRET}))
    try:
        body = b'{"CollectionId": "once"}'
        target = {
            "X-Amz-Target": "RekognitionService.CreateCollection",
            "Content-Type": "application/x-amz-json-1.1",
        }
        headers = signed_over(live.url, target, body)
        assert raw_request(live.url, body, headers)[0] == 200
        started = time.monotonic()
        status, response_headers, answer = raw_request(live.url, body, headers)
        assert status == 400 and response_headers["x-amzn-errortype"] == "ThrottlingException"
        assert "already been used" in json.loads(answer)["Message"]
        assert time.monotonic() - started >= 0.95  # answered late, so a retry is signed anew
        assert [op for op, _ in memory_service.calls] == ["CreateCollection"]
        # boto3 with its default retries: identical calls in the same second all succeed
        client = rekognition_client(live.url, retries={"mode": "standard", "max_attempts": 3})
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda _: client.list_collections()["CollectionIds"], range(3)))
        assert results == [["once"]] * 3
    finally:
        live.stop()


def test_allowed_hosts_refuse_other_host_headers(memory_service: MemoryService) -> None:
    live = serve_service_in_thread(
        memory_service, None, allowed_hosts=parse_allowed_hosts(None, auth=False, bind_host="127.0.0.1")
    )
    try:
        listing = {
            "X-Amz-Target": "RekognitionService.ListCollections",
            "Content-Type": "application/x-amz-json-1.1",
        }
        for host in ("attacker.example", "attacker.example:8080", "127.0.0.1.attacker.example"):
            status, headers, answer = raw_request(live.url, b"{}", {**listing, "Host": host})
            assert status == 400, host
            error = json.loads(answer)
            assert error["__type"] == "AccessDeniedException" and "--allowed-hosts" in error["Message"]
            assert headers["x-amzn-errortype"] == "AccessDeniedException"
        for host in ("localhost:9999", "127.0.0.1", "[::1]:8080", "LOCALHOST"):
            assert raw_request(live.url, b"{}", {**listing, "Host": host})[0] == 200, host
        assert [op for op, _ in memory_service.calls] == ["ListCollections"] * 4
    finally:
        live.stop()


def test_allowed_hosts_defaults_and_patterns() -> None:
    assert parse_allowed_hosts(None, auth=True, bind_host="0.0.0.0") is None
    assert parse_allowed_hosts(None, auth=False, bind_host="0.0.0.0") == list(LOCAL_HOSTS)
    assert parse_allowed_hosts(None, auth=False, bind_host="10.0.0.5") == [*LOCAL_HOSTS, "10.0.0.5"]
    assert parse_allowed_hosts("a.example, .b.example", auth=False, bind_host="::") == [
        "a.example",
        ".b.example",
    ]
    with pytest.raises(ValueError, match="at least one"):
        parse_allowed_hosts(" , ", auth=True, bind_host="127.0.0.1")
    assert host_allowed("x.b.example:443", [".b.example"]) and host_allowed("b.example", [".b.example"])
    assert not host_allowed("evilb.example", [".b.example"])
    assert host_allowed("anything", ["*"]) and not host_allowed(None, ["*"])


class SlowImages(MemoryService):
    """DetectFaces takes 0.4 s of (GIL-free) work, like a real image call."""

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        if operation == "DetectFaces":
            time.sleep(0.4)
        return super().call(operation, params)


@pytest.mark.parametrize("metadata_threads", [0, 2])
def test_cheap_calls_do_not_wait_behind_image_work(metadata_threads: int) -> None:
    """8 DetectFaces keep the 4 image threads busy; ListCollections meanwhile takes milliseconds
    on its own threads, but waits for image work when both share one pool (metadata_threads 0)."""
    live = serve_service_in_thread(SlowImages(), None, metadata_threads=metadata_threads)
    try:
        client = rekognition_client(live.url, max_pool_connections=16)
        stop = threading.Event()

        def images() -> None:
            while not stop.is_set():
                client.detect_faces(Image={"Bytes": b"\xff"})

        workers = [threading.Thread(target=images) for _ in range(8)]
        for worker in workers:
            worker.start()
        time.sleep(0.3)
        latencies = []
        for _ in range(5):
            started = time.monotonic()
            client.list_collections()
            latencies.append(time.monotonic() - started)
        stop.set()
        for worker in workers:
            worker.join(10)
    finally:
        live.stop()
    if metadata_threads:
        assert sorted(latencies)[2] < 0.1 and max(latencies) < 0.35, latencies
    else:
        assert sorted(latencies)[2] > 0.2, latencies  # the old behaviour: queued behind images


def test_connection_cap_closes_the_longest_idle_first() -> None:
    tracker = ConnectionTracker(max_connections=3)
    a, b, c, d, e = "abcde"
    for name in (a, b, c):
        assert tracker.opened(name) is None
    tracker.busy(a)
    assert tracker.opened(d) == b  # a has a request in flight, b waited longest
    tracker.busy(c)
    tracker.busy(d)
    assert tracker.opened(e) == e  # everyone is busy: the newcomer is refused
    tracker.idle(a)
    assert tracker.opened(e) == a
    assert (tracker.evicted, tracker.refused, len(tracker)) == (2, 1, 3)


def test_a_client_over_the_connection_cap_gets_a_throttling_exception() -> None:
    """With every connection busy, an SDK client is answered 503 ThrottlingException (retryable),
    which botocore parses: the refusal's Content-Length matches its body."""
    live = serve_service_in_thread(MemoryService(), None, limits=ConnectionLimits(max_connections=1))
    busy = socket.create_connection(("127.0.0.1", int(live.url.rsplit(":", 1)[1])), timeout=10)
    try:
        busy.sendall(head(1000))  # a request in flight: its body has not arrived
        time.sleep(0.3)
        client = rekognition_client(live.url)
        with pytest.raises(ClientError) as info:
            client.list_collections()
        error = info.value.response
        assert error["Error"]["Code"] == "ThrottlingException"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert "Too many open connections" in error["Error"]["Message"]
    finally:
        busy.close()
        live.stop()


def test_accept_failures_log_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    loop = mock.Mock()
    handler = AcceptErrorFilter(interval_s=60)
    with caplog.at_level(logging.WARNING, logger="pipeline.protocol.connections"):
        for _ in range(10_000):
            handler(
                loop,
                {
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(24, "Too many open files"),
                },
            )
    assert len(caplog.records) == 1 and "Too many open files" in caplog.records[0].getMessage()
    assert handler.suppressed == 9_999
    handler(loop, {"message": "something else", "exception": ValueError("x")})
    loop.default_exception_handler.assert_called_once()


def test_limits_are_validated() -> None:
    assert ConnectionLimits().body_deadline_s(15_000_000) == pytest.approx(10 + 15_000_000 / 65536)
    with pytest.raises(ValueError, match="header-timeout-s"):
        ConnectionLimits(header_timeout_s=0)


def test_limits_come_from_the_config_file_and_respect_the_file_limit(tmp_path: Path) -> None:
    config = tmp_path / "server.ini"
    config.write_text(
        "[server]\nmax_connections = 5000\nheader_timeout_s = 2.5\nkeep_alive_timeout_s = 3\n"
        "body_timeout_s = 4\nmin_body_rate = 1000\nmetadata_threads = 2\nallowed_hosts = a.example\n"
        "replay_cache_entries = 10\n"
    )
    options = read_config_file(config)
    assert options["metadata_threads"] == 2 and options["allowed_hosts"] == "a.example"
    limits = connection_limits(ServerOptions(**options), open_file_limit=1024)
    assert limits == ConnectionLimits(
        max_connections=512,
        header_timeout_s=2.5,
        keep_alive_timeout_s=3,
        body_timeout_s=4,
        min_body_rate=1000,
    )
    assert connection_limits(ServerOptions(), open_file_limit=1 << 20).max_connections == 1024
    assert accept_backlog(512, 1024) == 128 and accept_backlog(1024, 1 << 20) == 2048
