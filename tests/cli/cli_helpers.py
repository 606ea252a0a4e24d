"""Helpers for the command-line tests: captured results and a `facepipe serve` on a free port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Result:
    """Exit status and the text written to stdout and stderr."""

    status: int
    stdout: str
    stderr: str


Runner = Callable[..., Result]


Runner = Callable[..., Result]
"""Runs a command line; returns its Result."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(
    data_dir: Path, extra: Sequence[str] = ("--no-auth",), env: dict[str, str] | None = None
) -> Iterator[str]:
    """`facepipe serve` on a free loopback port over ``data_dir`` (``env`` added to its environment); yields its URL."""
    port = _free_port()
    log = data_dir / "server.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.cli.main",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
                *extra,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {})},
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    pytest.fail(f"facepipe serve exited: {log.read_text()[-800:]}")
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail("facepipe serve did not listen within 60 s")
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
