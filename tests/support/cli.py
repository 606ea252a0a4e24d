"""Command-line tests: captured results, commands run as separate processes with the AWS
configuration isolated, and a `facepipe serve` to point them at."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support import REPO_ROOT
from tests.support.server import facepipe_serve

AWS_CLI = (sys.executable, "-m", "awscli")
"""The AWS CLI v1 (the awscli package), run by the tests' interpreter."""


@dataclass(frozen=True)
class Result:
    """Exit status and the text written to stdout and stderr."""

    status: int
    stdout: str
    stderr: str


Runner = Callable[..., Result]
"""Runs a command line; returns its Result."""


def aws_env(**extra: str) -> dict[str, str]:
    """This process's environment with no AWS configuration of the user's: no config or credentials
    file, region us-east-1, dummy keys (``extra`` overrides or adds variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") or k == "AWS_DATA_PATH"}
    env.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="test-key",
        AWS_SECRET_ACCESS_KEY="test-secret",
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.update(extra)
    return env


def run_command(argv: Sequence[str], env: Mapping[str, str] | None = None, timeout_s: float = 180) -> Result:
    """``argv`` as a separate process from the repository root (``env``: its whole environment)."""
    completed = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout_s, cwd=REPO_ROOT, env=env
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


@contextlib.contextmanager
def running_server(
    data_dir: Path, extra: Sequence[str] = ("--no-auth",), env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """`facepipe serve` on a free loopback port over ``data_dir`` (``env`` added to this process's
    environment), healthy; yields its URL and stops it at the end."""
    server = facepipe_serve(data_dir, *extra, env={**os.environ, **(env or {})}, log=data_dir / "server.log")
    try:
        yield server.url
    finally:
        server.stop(15)
