"""Server suite: SearchFaces requests per second through HTTP (boto3 against `facepipe serve`) and in
process (FacePipe.call), with the same collection, the same requests and the same client threads.

The server runs as a child process on a free loopback port with --no-auth and a temporary data
directory, and is stopped at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.cli.bench.context import BenchContext
from pipeline.cli.bench.report import Figure, SuiteResult
from pipeline.cli.bench.stats import speedups, spread
from pipeline.cli.bench.suite_associate import Call, index_sample_faces

SERVER_START_TIMEOUT_S = 120.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, ctx: BenchContext) -> tuple[subprocess.Popen[bytes], str]:
    """`facepipe serve` in a child process (same provider and threads); its URL once it listens."""
    port = free_port()
    env = dict(os.environ, FACEPIPE_PROVIDER=ctx.provider.used, FACEPIPE_THREADS=str(ctx.threads))
    env["FACEPIPE_CACHE"] = str(ctx.settings.cache_dir)
    code = "import sys; from pipeline.protocol.server import serve_main; sys.exit(serve_main(sys.argv[1:]))"
    args = ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir), "--no-auth"]
    log = (data_dir / "server.log").open("wb")
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
            tail = (data_dir / "server.log").read_text(errors="replace")[-600:]
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


def boto3_call(url: str) -> Call:
    """An operation runner that sends each request through a boto3 Rekognition client at ``url``."""
    import boto3
    from botocore import xform_name
    from botocore.config import Config

    client = boto3.client(
        "rekognition",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench-secret",
        config=Config(retries={"max_attempts": 1}, read_timeout=300, max_pool_connections=64),
    )

    def call(operation: str, params: dict[str, Any]) -> dict[str, Any]:
        method = getattr(client, xform_name(operation))
        response: dict[str, Any] = method(**params)
        response.pop("ResponseMetadata", None)
        return response

    return call


def requests_per_second(
    make_call: Callable[[], Call], requests: list[tuple[str, dict[str, Any]]], clients: int
) -> float:
    """Throughput of ``clients`` threads, each with its own runner, sending all ``requests`` once each."""
    runners = [make_call() for _ in range(clients)]
    share = [requests[i::clients] for i in range(clients)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def worker(call: Call, mine: list[tuple[str, dict[str, Any]]]) -> None:
        barrier.wait()
        try:
            for operation, params in mine:
                call(operation, params)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(r, s)) for r, s in zip(runners, share, strict=True)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]!r}")
    return len(requests) / seconds


def run_server(ctx: BenchContext) -> SuiteResult:
    """Run the server suite at the context's client counts."""
    from pipeline.service import FacePipe

    result = SuiteResult("server")
    clients_list = ctx.pick("server", [1, 2, 4], [1, 2])
    per_run = 20 if ctx.quick else 100
    with tempfile.TemporaryDirectory(prefix="facepipe-bench-server-") as tmp:
        server_dir, local_dir = Path(tmp) / "server", Path(tmp) / "local"
        server_dir.mkdir()
        local_dir.mkdir()
        proc, url = start_server(server_dir, ctx)
        fp = FacePipe(replace(ctx.settings, data_dir=local_dir))
        try:
            http_faces = index_sample_faces(boto3_call(url), "bench", 12)
            local_faces = index_sample_faces(fp.call, "bench", 12)

            def requests_for(faces: list[str]) -> list[tuple[str, dict[str, Any]]]:
                return [
                    (
                        "SearchFaces",
                        {"CollectionId": "bench", "FaceId": faces[i % len(faces)], "MaxFaces": 10},
                    )
                    for i in range(per_run)
                ]

            for clients in clients_list:
                http_rps: list[float] = []
                local_rps: list[float] = []
                for _ in range(ctx.warmup):
                    requests_per_second(lambda: boto3_call(url), requests_for(http_faces)[:10], clients)
                    requests_per_second(lambda: fp.call, requests_for(local_faces)[:10], clients)
                for _ in range(ctx.repeat):
                    http_rps.append(
                        requests_per_second(lambda: boto3_call(url), requests_for(http_faces), clients)
                    )
                    local_rps.append(requests_per_second(lambda: fp.call, requests_for(local_faces), clients))
                params = {"clients": clients, "requests_per_run": per_run, "operation": "SearchFaces"}
                result.add(
                    Figure(
                        f"http.requests_per_s.c{clients}",
                        f"SearchFaces through HTTP (boto3), {clients} client{'s' if clients > 1 else ''}",
                        "requests/s",
                        "higher",
                        spread(http_rps),
                        params,
                    )
                )
                result.add(
                    Figure(
                        f"in_process.requests_per_s.c{clients}",
                        f"SearchFaces in process, {clients} client{'s' if clients > 1 else ''}",
                        "requests/s",
                        "higher",
                        spread(local_rps),
                        params,
                    )
                )
                # HTTP rate as a share of the in-process rate: 1 would mean HTTP costs nothing.
                result.add(
                    Figure(
                        f"http.ratio_to_in_process.c{clients}",
                        f"HTTP throughput / in-process throughput, {clients} client{'s' if clients > 1 else ''}",
                        "x",
                        "higher",
                        spread(speedups(local_rps, http_rps)),
                        params,
                    )
                )
        finally:
            fp.close()
            stop_server(proc)
    result.note = (
        f"SearchFaces by FaceId (MaxFaces 10) on a 12+-face collection, {per_run} requests per run shared "
        "by the client threads; the server is `facepipe serve --no-auth` on loopback, driven by boto3 "
        "(one client per thread), and competes with the clients for the same cores."
    )
    return result
