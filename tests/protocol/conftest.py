"""Fixtures for the protocol tests: an in-memory service and a live server on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.protocol.sigv4 import SigV4Verifier
from tests.support.memory_service import MemoryService
from tests.support.server import ACCESS_KEY_ID, SECRET, ThreadServer, serve_service_in_thread


@pytest.fixture()
def memory_service() -> MemoryService:
    return MemoryService()


@pytest.fixture()
def open_server(memory_service: MemoryService) -> Iterator[ThreadServer]:
    """A server without authentication on a memory service."""
    live = serve_service_in_thread(memory_service, None)
    yield live
    live.stop()


@pytest.fixture()
def signed_server(memory_service: MemoryService) -> Iterator[ThreadServer]:
    """A server that verifies SigV4 against ACCESS_KEY_ID/SECRET."""
    live = serve_service_in_thread(memory_service, SigV4Verifier({ACCESS_KEY_ID: SECRET}))
    yield live
    live.stop()
