"""Server suite: requests/s and p50/p99 latency through HTTP against the same calls in process.

A temporary collection is built from the sample photos (variants of the six-face group photo and
the Tom Hanks portrait, whose face is user "tom"). Then SearchUsers (by UserId), ListFaces
(MaxResults 20) and SearchFacesByImage (the portrait) run at each client count (1, 4, 16 by
default), interleaved run by run:

- in process: client threads calling ``FacePipe.call`` on one shared FacePipe;
- HTTP: `facepipe serve` as a child process on a free loopback port, on the same data directory,
  SigV4 authentication on (``--server-no-auth`` turns it off), ``--server-threads`` request
  threads. The clients are threads of this process, each with its own client: ``http`` (default)
  is a lean JSON 1.1 client (one persistent connection, every request SigV4-signed with
  botocore's signer), ``boto3`` a boto3 Rekognition client. Both sign a unique NONCE_HEADER into
  every request: the server accepts a signature once, and identical calls signed in the same
  second would otherwise carry the same signature. They share the machine's cores with
  the server, so HTTP figures include the clients' CPU time.

Figures per operation and client count: requests/s, p50 and p99 latency (per request within a
run), CPU ms per request of the serving process (in process: this process; HTTP: the server
process alone, clients excluded; warm-up calls included), and HTTP/in-process throughput.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.bench.context import BenchContext
from pipeline.bench.report import Figure, SuiteResult
from pipeline.bench.stats import percentile, speedups, spread
from pipeline.bench.suite_associate import Call, index_sample_faces
from pipeline.vision.samples import sample_photos

SERVER_START_TIMEOUT_S = 120.0
KEY_ID, SECRET = "AKIDFACEPIPEBENCH", "facepipe-bench-secret"
"""Credentials the benchmark server accepts and its clients sign with."""
NONCE_HEADER = "X-Facepipe-Nonce"
"""A signed header with a fresh value per request, so that identical requests differ."""
COLLECTION, USER = "bench", "tom"
OPERATIONS = ("SearchUsers", "ListFaces", "SearchFacesByImage")
"""The measured operations: two metadata operations and one image operation."""
METADATA_REQUESTS, IMAGE_REQUESTS = 400, 40
"""Requests per timed run (shared by the client threads); a tenth of them with --quick."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, ctx: BenchContext, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`facepipe serve` in a child process (same provider and ONNX threads, SigV4 unless the context
    says no auth, ctx.server_threads request threads); its URL once it listens."""
    port = free_port()
    env = dict(os.environ, FACEPIPE_PROVIDER=ctx.provider.used, FACEPIPE_THREADS=str(ctx.threads))
    env["FACEPIPE_CACHE"] = str(ctx.settings.cache_dir)
    env["FACEPIPE_CREDENTIALS"] = f"{KEY_ID}:{SECRET}"
    code = "import sys; from pipeline.cli.serve import serve_main; sys.exit(serve_main(sys.argv[1:]))"
    args = ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    args += ["--threads", str(ctx.server_threads)]
    if not ctx.server_auth:
        args.append("--no-auth")
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args, "--log-level", "warning"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-600:]
            raise RuntimeError(f"facepipe serve exited with {proc.returncode}: {tail}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    stop_server(proc)
    raise RuntimeError(f"facepipe serve did not listen within {SERVER_START_TIMEOUT_S:.0f} s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group; SIGKILL if it has not exited after 10 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def boto3_call(url: str, sign: bool) -> Call:
    """An operation runner sending each request through its own boto3 Rekognition client at ``url``."""
    import boto3
    from botocore import UNSIGNED, xform_name
    from botocore.config import Config

    config = Config(retries={"max_attempts": 1}, read_timeout=300, max_pool_connections=4)
    if not sign:
        config = config.merge(Config(signature_version=UNSIGNED))
    client = boto3.session.Session().client(
        "rekognition",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        config=config,
    )

    def add_nonce(request: Any, **_: Any) -> None:
        request.headers[NONCE_HEADER] = uuid.uuid4().hex

    if sign:
        client.meta.events.register("before-sign.rekognition", add_nonce)

    def call(operation: str, params: dict[str, Any]) -> dict[str, Any]:
        method = getattr(client, xform_name(operation))
        response: dict[str, Any] = method(**params)
        response.pop("ResponseMetadata", None)
        return response

    return call


def json_body(params: dict[str, Any]) -> bytes:
    """A request as the JSON 1.1 protocol sends it (blobs base64-encoded)."""

    def encode(value: Any) -> Any:
        if isinstance(value, bytes):
            return base64.b64encode(value).decode()
        if isinstance(value, dict):
            return {k: encode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [encode(v) for v in value]
        return value

    return json.dumps(encode(params)).encode()


def http_call(url: str, sign: bool) -> Call:
    """A lean JSON 1.1 runner: one persistent connection, each request SigV4-signed (when ``sign``)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=300)
    signer = SigV4Auth(Credentials(KEY_ID, SECRET), "rekognition", "us-east-1")

    def call(operation: str, params: dict[str, Any]) -> dict[str, Any]:
        body = json_body(params)
        headers = {
            "X-Amz-Target": f"RekognitionService.{operation}",
            "Content-Type": "application/x-amz-json-1.1",
        }
        if sign:
            headers[NONCE_HEADER] = uuid.uuid4().hex
            request = AWSRequest(method="POST", url=url + "/", data=body, headers=headers)
            signer.add_auth(request)
            headers = dict(request.headers.items())
        conn.request("POST", "/", body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"{operation}: HTTP {response.status}: {payload[:300]!r}")
        result: dict[str, Any] = json.loads(payload)
        return result

    return call


CLIENTS: dict[str, Callable[[str, bool], Call]] = {"http": http_call, "boto3": boto3_call}
"""HTTP client kinds (``--server-client``): name -> factory(url, sign) of one client's runner."""


@dataclass(frozen=True)
class LoadRun:
    """One timed run of concurrent clients: wall seconds, every request's seconds, serving CPU seconds.

    cpu_seconds is None where the serving process's CPU time cannot be read.
    """

    wall_seconds: float
    latencies: list[float]
    cpu_seconds: float | None
    calls: int

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies) / self.wall_seconds

    def latency_ms(self, q: float) -> float:
        """The q-th percentile (0-100) of the request latencies, in milliseconds."""
        return percentile(self.latencies, q) * 1000.0

    @property
    def cpu_ms_per_request(self) -> float | None:
        return None if self.cpu_seconds is None else self.cpu_seconds * 1000.0 / self.calls


def run_clients(
    make_call: Callable[[], Call],
    operation: str,
    params: dict[str, Any],
    clients: int,
    requests: int,
    cpu_seconds: Callable[[], float | None] = lambda: None,
) -> LoadRun:
    """``clients`` threads, each with its own runner, sending ``requests`` calls between them.

    Each thread makes one untimed call first (connection, first-use costs); the clock starts when
    every thread is ready. ``cpu_seconds`` reads the serving process's CPU time (before and after,
    warm-up calls included in ``calls``).
    """
    per_client = max(1, requests // clients)
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)
    cpu_before = cpu_seconds()

    def worker() -> None:
        mine: list[float] = []
        try:
            call = make_call()
            call(operation, params)
        except BaseException as exc:
            errors.append(exc)
            ready.wait()
            return
        ready.wait()
        try:
            for _ in range(per_client):
                start = time.perf_counter()
                call(operation, params)
                mine.append(time.perf_counter() - start)
        except BaseException as exc:
            errors.append(exc)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    cpu_after = cpu_seconds()
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]!r}")
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return LoadRun(wall, latencies, cpu, len(latencies) + clients)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds used so far by process ``pid`` (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build_collection(call: Call, faces: int) -> dict[str, dict[str, Any]]:
    """Index sample faces into COLLECTION and make USER of the portrait's face; each operation's request."""
    portrait = (sample_photos() / "Tom_Hanks_54745.png").read_bytes()
    index_sample_faces(call, COLLECTION, faces)
    tom = call("IndexFaces", {"CollectionId": COLLECTION, "Image": {"Bytes": portrait}, "MaxFaces": 1})
    call("CreateUser", {"CollectionId": COLLECTION, "UserId": USER})
    face_id = tom["FaceRecords"][0]["Face"]["FaceId"]
    call("AssociateFaces", {"CollectionId": COLLECTION, "UserId": USER, "FaceIds": [face_id]})
    return {
        "SearchUsers": {"CollectionId": COLLECTION, "UserId": USER, "MaxUsers": 5},
        "ListFaces": {"CollectionId": COLLECTION, "MaxResults": 20},
        "SearchFacesByImage": {"CollectionId": COLLECTION, "Image": {"Bytes": portrait}, "MaxFaces": 5},
    }


def _plural(clients: int) -> str:
    return f"{clients} client{'s' if clients > 1 else ''}"


def _add_mode_figures(
    result: SuiteResult,
    mode: str,
    words: str,
    operation: str,
    clients: int,
    runs: list[LoadRun],
    params: dict[str, Any],
) -> None:
    tag = f"{mode}.{operation}"
    where = f"{operation} {words}, {_plural(clients)}"
    result.add(
        Figure(
            f"{tag}.requests_per_s.c{clients}",
            f"{where}: requests/s",
            "requests/s",
            "higher",
            spread([r.requests_per_s for r in runs]),
            params,
        )
    )
    for q in (50, 99):
        result.add(
            Figure(
                f"{tag}.p{q}_ms.c{clients}",
                f"{where}: latency p{q}",
                "ms",
                "lower",
                spread([r.latency_ms(q) for r in runs]),
                {**params, "percentile": q},
            )
        )
    cpu = [c for c in (r.cpu_ms_per_request for r in runs) if c is not None]
    if cpu:
        result.add(
            Figure(
                f"{tag}.cpu_ms_per_request.c{clients}",
                f"{where}: CPU ms per request of the serving process",
                "ms",
                "lower",
                spread(cpu),
                params,
            )
        )


def run_server(ctx: BenchContext) -> SuiteResult:
    """Run the server suite at the context's client counts."""
    from pipeline.service import FacePipe

    result = SuiteResult("server")
    clients_list = ctx.pick("server", [1, 4, 16], [1, 2])
    divide = 10 if ctx.quick else 1
    counts = {op: (IMAGE_REQUESTS if "Image" in op else METADATA_REQUESTS) // divide for op in OPERATIONS}
    make_client = CLIENTS[ctx.server_client]
    with tempfile.TemporaryDirectory(prefix="facepipe-bench-server-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        fp = FacePipe(replace(ctx.settings, data_dir=data_dir))
        proc: subprocess.Popen[bytes] | None = None
        try:
            requests = build_collection(fp.call, 6 if ctx.quick else 30)
            faces = fp.call("DescribeCollection", {"CollectionId": COLLECTION})["FaceCount"]
            proc, url = start_server(data_dir, ctx, Path(tmp) / "server.log")
            pid = proc.pid

            def local() -> Call:
                return fp.call

            def remote() -> Call:
                return make_client(url, ctx.server_auth)

            for operation in OPERATIONS:
                for clients in clients_list:
                    request, n = requests[operation], counts[operation]
                    for _ in range(ctx.warmup):
                        run_clients(local, operation, request, clients, min(n, 2 * clients))
                        run_clients(remote, operation, request, clients, min(n, 2 * clients))
                    local_runs: list[LoadRun] = []
                    http_runs: list[LoadRun] = []
                    for _ in range(ctx.repeat):
                        local_runs.append(
                            run_clients(local, operation, request, clients, n, time.process_time)
                        )
                        http_runs.append(
                            run_clients(
                                remote, operation, request, clients, n, lambda: process_cpu_seconds(pid)
                            )
                        )
                    params = {
                        "operation": operation,
                        "clients": clients,
                        "requests_per_run": n,
                        "faces": faces,
                    }
                    _add_mode_figures(
                        result, "in_process", "in process", operation, clients, local_runs, params
                    )
                    _add_mode_figures(
                        result,
                        "http",
                        f"through HTTP ({ctx.server_client})",
                        operation,
                        clients,
                        http_runs,
                        params,
                    )
                    # HTTP rate as a share of the in-process rate: 1 would mean HTTP costs nothing.
                    result.add(
                        Figure(
                            f"http.{operation}.ratio_to_in_process.c{clients}",
                            f"{operation} HTTP / in-process throughput, {_plural(clients)}",
                            "x",
                            "higher",
                            spread(
                                speedups(
                                    [1 / r.requests_per_s for r in http_runs],
                                    [1 / r.requests_per_s for r in local_runs],
                                )
                            ),
                            params,
                        )
                    )
        finally:
            fp.close()
            if proc is not None:
                stop_server(proc)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result.details = {
        "client": ctx.server_client,
        "auth": ctx.server_auth,
        "server_threads": ctx.server_threads,
        "faces": faces,
        "requests_per_run": counts,
        "load_average_1m_at_end": load,
    }
    result.note = (
        f"SearchUsers, ListFaces (MaxResults 20) and SearchFacesByImage (MaxFaces 5) on a {faces}-face "
        f"collection; requests per run: {counts}, shared by the client threads. HTTP: `facepipe serve` "
        f"({'SigV4' if ctx.server_auth else '--no-auth'}, {ctx.server_threads} threads) on loopback on the "
        f"same data directory, driven by the {ctx.server_client} client, one per thread; clients and "
        "server share the cores. CPU ms per request counts the serving process only and does not "
        "depend on other load on the machine."
    )
    return result
