"""Servers for the tests: a free loopback port, `facepipe serve` as a child process waited on until
GET /health answers, and the protocol app served by uvicorn on a thread of the test process."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import uvicorn
from botocore.config import Config

from pipeline.protocol.app import create_app
from pipeline.protocol.connections import ConnectionLimits
from pipeline.protocol.server import run_server, uvicorn_server
from pipeline.protocol.sigv4 import SigV4Verifier
from tests.support import REPO_ROOT

LOOPBACK = "127.0.0.1"

ACCESS_KEY_ID = "AKIDTESTPROTOCOL"
SECRET = "protocol-test-secret"
"""The key pair of rekognition_client's default credentials (what signed test servers accept)."""

FACEPIPE = Path(sys.executable).with_name("facepipe")
"""The installed console script, next to the interpreter running the tests."""

PYTHON_FACEPIPE = (sys.executable, "-m", "pipeline.cli.main")
"""`facepipe` run from the checkout (the tests' interpreter, the repository's package)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (nothing stops another process taking it after)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any AWS_* or FACEPIPE_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FACEPIPE_"))}
    env.update(extra)
    return env


def raw_request(
    url: str, body: bytes, headers: Mapping[str, str], path: str = "/", method: str = "POST"
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request without any client library: (status, lower-case headers, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=dict(headers))
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def health_status(url: str, timeout_s: float = 2.0) -> int | None:
    """The HTTP status of GET ``url``/health, or None when nothing answers (certificates not checked)."""
    parts = urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout_s, context=context)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


class ServeProcess:
    """A server child process (``argv``, listening on ``port``); stdout and stderr go to ``log``.

    ``start`` returns once GET /health answers 200 and fails (AssertionError, with the end of the
    log) when the process exits first or ``timeout_s`` seconds pass. ``new_session``: the child
    leads its own process group, which ``stop`` and ``kill`` signal as a whole.
    """

    def __init__(
        self,
        argv: Sequence[str],
        port: int,
        log: Path,
        env: Mapping[str, str] | None = None,
        scheme: str = "http",
        new_session: bool = False,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.port = port
        self.log = log
        self.url = f"{scheme}://{LOOPBACK}:{port}"
        self.new_session = new_session
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as log_file:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO_ROOT,
                env=dict(os.environ if env is None else env),
                start_new_session=new_session,
                preexec_fn=preexec_fn,
            )

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        port: int,
        log: Path,
        env: Mapping[str, str] | None = None,
        timeout_s: float = 120.0,
        **options: Any,
    ) -> ServeProcess:
        """Start ``argv`` (which must listen on ``port``) and wait until it is healthy."""
        server = cls(argv, port, log, env, **options)
        try:
            server.wait_healthy(timeout_s)
        except BaseException:
            server.kill()
            raise
        return server

    def output(self) -> str:
        """What the process has written so far (stdout and stderr)."""
        return self.log.read_text(errors="replace")

    def wait_healthy(self, timeout_s: float = 120.0) -> None:
        """Wait until GET /health answers 200 (see the class docstring)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.argv[:4]} exited with status {self.process.returncode}: {self.output()[-3000:]}"
                )
            if health_status(self.url, timeout_s=2.0) == 200:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no healthy server at {self.url} after {timeout_s:.0f} s: {self.output()[-3000:]}"
                )
            time.sleep(0.1)

    def _signal(self, signum: int) -> None:
        if self.process.poll() is not None:
            return
        if self.new_session:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (as service managers stop it), SIGKILL after ``timeout_s``; returns the exit status."""
        self._signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode

    def kill(self) -> None:
        """SIGKILL, and wait for the process to go."""
        self._signal(signal.SIGKILL)
        self.process.wait(15)


def facepipe_serve(
    data_dir: Path,
    *options: str,
    env: Mapping[str, str] | None = None,
    command: Sequence[str] = PYTHON_FACEPIPE,
    log: Path | None = None,
    timeout_s: float = 120.0,
    **process_options: Any,
) -> ServeProcess:
    """`facepipe serve --host 127.0.0.1 --port <free> --data-dir <data_dir> <options>`, healthy.

    ``command``: the `facepipe` to run (default: this checkout's, through the tests' interpreter;
    FACEPIPE: the installed script). ``log`` defaults to server-<port>.log beside ``data_dir``.
    """
    port = free_port()
    argv = [*command, "serve", "--host", LOOPBACK, "--port", str(port), "--data-dir", str(data_dir), *options]
    log = log or data_dir.parent / f"server-{port}.log"
    return ServeProcess.start(argv, port, log, env, timeout_s=timeout_s, **process_options)


@dataclass
class ThreadServer:
    """A uvicorn server running on a daemon thread of the test process."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread
    service: Any = None

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def serve_in_thread(
    app: Any, limits: ConnectionLimits, scheme: str = "http", service: Any = None, **uvicorn_options: Any
) -> ThreadServer:
    """``app`` on a free loopback port through `facepipe serve`'s connection layer (uvicorn_server
    and run_server with ``limits``); returns once uvicorn has started."""
    port = free_port()
    server, _ = uvicorn_server(app, LOOPBACK, port, limits, **uvicorn_options)
    thread = threading.Thread(target=run_server, args=(server,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    return ThreadServer(f"{scheme}://{LOOPBACK}:{port}", server, thread, service)


def serve_service_in_thread(
    service: Any,
    verifier: SigV4Verifier | None,
    max_body_bytes: int = 1 << 20,
    limits: ConnectionLimits | None = None,
    **app_options: Any,
) -> ThreadServer:
    """The protocol app over ``service`` (a FacePipe or a fake with its call/operations) on a thread."""
    limits = limits or ConnectionLimits()
    app = create_app(
        service, verifier, max_body_bytes=max_body_bytes, threads=4, limits=limits, **app_options
    )
    return serve_in_thread(app, limits, service=service)


def rekognition_client(url: str, key: str = ACCESS_KEY_ID, secret: str = SECRET, **config: Any) -> Any:
    """A boto3 Rekognition client for ``url`` (us-east-1, no retries; ``config`` adds botocore Config)."""
    return boto3.client(
        "rekognition",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(**{"retries": {"max_attempts": 1}, **config}),
    )


@contextlib.contextmanager
def s3_bucket(bucket: str, objects: Mapping[str, bytes]) -> Iterator[str]:
    """A real S3 API (moto's server mode) on a free loopback port holding ``bucket`` with ``objects``
    (key: bytes); yields its endpoint URL. The test skips when moto's server mode is not installed."""
    moto_server = pytest.importorskip("moto.server")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address=LOOPBACK, port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://{LOOPBACK}:{port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="s3-test",
            aws_secret_access_key="s3-test",
        )
        s3.create_bucket(Bucket=bucket)
        for key, body in objects.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body)
        yield endpoint
    finally:
        server.stop()
