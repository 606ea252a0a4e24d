"""Command-line tests: captured results, and a `facepipe serve` to point commands at."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.server import facepipe_serve


@dataclass(frozen=True)
class Result:
    """Exit status and the text written to stdout and stderr."""

    status: int
    stdout: str
    stderr: str


Runner = Callable[..., Result]
"""Runs a command line; returns its Result."""


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
