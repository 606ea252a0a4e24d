"""`facepipe serve` as operators run it: configuration, credentials, refusal, warnings, shutdown."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError, SSLError

from pipeline.cli.serve import read_config_file, serve_main
from pipeline.protocol.app import create_app
from pipeline.protocol.connections import ConnectionLimits
from tests.support.memory_service import MemoryService
from tests.support.server import (
    ServeProcess,
    clean_env,
    free_port,
    rekognition_client,
    serve_in_thread,
    serve_service_in_thread,
)

SERVE = [
    sys.executable,
    "-c",
    "import sys; from pipeline.cli.serve import serve_main; sys.exit(serve_main(sys.argv[1:]))",
]


def serve(
    log_dir: Path, args: list[str], port: int, env: dict[str, str], scheme: str = "http"
) -> ServeProcess:
    """serve_main with ``args`` (listening on ``port``) as a child process, once GET /health answers."""
    return ServeProcess.start([*SERVE, *args], port, log_dir / "serve.log", env, timeout_s=60, scheme=scheme)


def stop(server: ServeProcess) -> tuple[int, str]:
    """SIGTERM, as service managers stop it; the exit status is 0 or the re-raised SIGTERM."""
    status = server.stop(30)
    err = server.output()
    assert status in (0, -signal.SIGTERM), err[-2000:]
    assert "requests finished, store closed" in err
    return status, err


def test_refuses_to_start_with_auth_on_and_no_credentials(tmp_path: Path) -> None:
    run = subprocess.run(
        [*SERVE, "--port", str(free_port()), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert run.returncode == 2
    assert "no credentials are configured" in run.stderr and "--no-auth" in run.stderr


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("[server]\nprot = 1\n", "unknown key 'prot'"),
        ("[server]\nport = eighty\n", "port = 'eighty' is not a int"),
        ("[other]\n", "no [server] section"),
        ("not ini", "not an INI file"),
    ],
)
def test_bad_config_files_are_explained(tmp_path: Path, config: str, message: str) -> None:
    path = tmp_path / "server.ini"
    path.write_text(config)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_config_file(path)
    run = subprocess.run(
        [*SERVE, "--config", str(path), "--no-auth"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert run.returncode == 2 and "facepipe serve: error:" in run.stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-clock-skew-s", "0", "--max-clock-skew-s must be a positive number"),
        ("--max-clock-skew-s", "-30", "--max-clock-skew-s must be a positive number"),
        ("--max-clock-skew-s", "inf", "--max-clock-skew-s must be a positive number"),
        ("--replay-cache-entries", "0", "--replay-cache-entries must be at least 1"),
        ("--max-connections", "0", "--max-connections must be at least 1"),
        ("--threads", "0", "--threads must be at least 1"),
        ("--metadata-threads", "-1", "--metadata-threads must be 0"),
    ],
)
def test_bad_option_values_are_usage_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    message: str,
) -> None:
    """Refused before the store or the models are opened: exit status 2 and one line saying why."""
    monkeypatch.setenv("FACEPIPE_CREDENTIALS", "AKIDOPTS:secret")
    assert serve_main(["--data-dir", str(tmp_path), f"{option}={value}"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("facepipe serve: error: ") and message in error
    assert not any(tmp_path.iterdir())  # nothing was opened


def test_an_unreachable_store_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    run = subprocess.run(
        [*SERVE, "--no-auth", "--port", str(free_port()), "--data-dir", str(tmp_path),
         "--store", "postgresql://nobody@127.0.0.1:1/not_a_database"],
        capture_output=True, text=True, env=clean_env(), timeout=120,
    )  # fmt: skip
    assert run.returncode == 1
    assert "cannot open the store or load the models" in run.stderr
    assert "Traceback" not in run.stderr


def test_config_file_credentials_file_and_env_credentials(tmp_path: Path) -> None:
    port = free_port()
    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = file-secret\n")
    config = tmp_path / "server.ini"
    config.write_text(
        f"[server]\nport = {port}\ndata_dir = {tmp_path / 'data'}\ncredentials_file = {credentials}\nthreads = 2\n"
    )
    env = clean_env(FACEPIPE_CREDENTIALS="AKIDENV:env-secret")
    server = serve(tmp_path, ["--config", str(config)], port, env)
    try:
        url = server.url
        rekognition_client(url, key="AKIDFILE", secret="file-secret").create_collection(
            CollectionId="from-file"
        )
        assert rekognition_client(url, key="AKIDENV", secret="env-secret").list_collections()[
            "CollectionIds"
        ] == ["from-file"]
        for client, code in (
            (rekognition_client(url, signature_version=UNSIGNED), "MissingAuthenticationTokenException"),
            (rekognition_client(url, key="AKIDFILE", secret="env-secret"), "InvalidSignatureException"),
        ):
            with pytest.raises(ClientError) as info:
                client.delete_collection(CollectionId="from-file")
            assert info.value.response["Error"]["Code"] == code
    finally:
        _, err = stop(server)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    requests = [x for x in lines if "request_id" in x]
    assert [(x["operation"], x["status"], x["access_key_id"]) for x in requests] == [
        ("CreateCollection", 200, "AKIDFILE"),
        ("ListCollections", 200, "AKIDENV"),
        ("DeleteCollection", 403, None),
        ("DeleteCollection", 403, None),
    ]
    assert "authentication is OFF" not in err


def test_credentials_files_on_the_command_line_add_to_the_config_file(tmp_path: Path) -> None:
    port = free_port()
    from_config, from_option = tmp_path / "a.ini", tmp_path / "b.ini"
    from_config.write_text("[a]\naws_access_key_id = AKIDA\naws_secret_access_key = secret-a\n")
    from_option.write_text("[b]\naws_access_key_id = AKIDB\naws_secret_access_key = secret-b\n")
    config = tmp_path / "server.ini"
    config.write_text(f"[server]\ncredentials_file = {from_config}\n")
    args = ["--config", str(config), "--credentials-file", str(from_option), "--port", str(port)]
    server = serve(tmp_path, [*args, "--data-dir", str(tmp_path / "data")], port, clean_env())
    try:
        for key, secret in (("AKIDA", "secret-a"), ("AKIDB", "secret-b")):
            assert (
                rekognition_client(server.url, key=key, secret=secret).list_collections()["CollectionIds"]
                == []
            )
    finally:
        stop(server)


def test_no_auth_warns_loudly_and_serves(tmp_path: Path) -> None:
    port = free_port()
    server = serve(
        tmp_path, ["--port", str(port), "--data-dir", str(tmp_path / "data"), "--no-auth"], port, clean_env()
    )
    try:
        unsigned = rekognition_client(server.url, signature_version=UNSIGNED)
        assert unsigned.list_collections()["CollectionIds"] == []
    finally:
        _, err = stop(server)
    assert "WARNING: authentication is OFF (--no-auth)" in err


def test_shutdown_lets_in_flight_requests_finish() -> None:
    release = threading.Event()
    entered = threading.Event()

    class Slow(MemoryService):
        def call(self, operation: str, params: dict) -> dict:
            entered.set()
            release.wait(10)
            return super().call(operation, params)

    live = serve_service_in_thread(Slow(), None)
    client = rekognition_client(live.url)
    answers: list[object] = []
    worker = threading.Thread(target=lambda: answers.append(client.create_collection(CollectionId="late")))
    worker.start()
    assert entered.wait(10)
    live.server.should_exit = True  # what SIGTERM/SIGINT do
    time.sleep(0.3)
    assert live.thread.is_alive()  # still waiting for the request in flight
    release.set()
    worker.join(10)
    live.thread.join(15)
    assert not live.thread.is_alive()
    assert answers and answers[0]["StatusCode"] == 200  # type: ignore[index]


def make_certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (skips the test without openssl)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        made = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except FileNotFoundError:
        pytest.skip("openssl is not installed: no test certificate")
    if made.returncode != 0:
        pytest.skip(f"openssl cannot make a test certificate: {made.stderr[-300:]}")
    return cert, key


def test_tls_handshakes_get_the_header_deadline(tmp_path: Path) -> None:
    """A connection that never starts its TLS handshake is closed after --header-timeout-s, not
    asyncio's 60 s: before the handshake the HTTP layer's deadline and cap do not see it."""
    cert, key = make_certificate(tmp_path)
    limits = ConnectionLimits(max_connections=4, header_timeout_s=1)
    app = create_app(MemoryService(), None, max_body_bytes=1 << 20, threads=2, limits=limits)
    live = serve_in_thread(app, limits, scheme="https", ssl_certfile=str(cert), ssl_keyfile=str(key))
    port = int(live.url.rsplit(":", 1)[1])
    try:
        silent = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(5)]
        started = time.monotonic()
        for sock in silent:
            with contextlib.suppress(ConnectionResetError):  # closed by the server either way
                assert sock.recv(1024) == b""
            sock.close()
        assert time.monotonic() - started < 5
    finally:
        live.stop()


def test_https_with_sigv4(tmp_path: Path) -> None:
    """The production set-up: TLS certificate and key, SigV4 on, a boto3 client verifying the cert."""
    cert, key = make_certificate(tmp_path)
    port = free_port()
    args = [
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "data"),
        "--ssl-certfile",
        str(cert),
        "--ssl-keyfile",
        str(key),
    ]
    env = clean_env(AWS_ACCESS_KEY_ID="AKIDTLS", AWS_SECRET_ACCESS_KEY="tls-secret")
    server = serve(tmp_path, args, port, env, scheme="https")
    try:
        url = server.url
        verified = boto3.client(
            "rekognition", endpoint_url=url, region_name="us-east-1", verify=str(cert),
            aws_access_key_id="AKIDTLS", aws_secret_access_key="tls-secret",
        )  # fmt: skip
        assert verified.create_collection(CollectionId="tls")["StatusCode"] == 200
        assert verified.list_collections()["CollectionIds"] == ["tls"]
        unverified = rekognition_client(url, key="AKIDTLS", secret="tls-secret")
        with pytest.raises(SSLError):  # without the certificate, the client refuses the server
            unverified.list_collections()
        # idle TLS keep-alive connections would hold a graceful shutdown until its timeout
        verified.close()
        unverified.close()
    finally:
        stop(server)
