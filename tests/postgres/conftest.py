"""Fixtures for the PostgreSQL store tests: one real server per test session (tests/support/pgserver.py)
and a fresh database per test. Every test here skips, saying why, when PostgreSQL is not installed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.pgserver import TempPostgres, find_binaries


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TempPostgres]:
    """A PostgreSQL server on a free loopback port, owned by an unprivileged user, for the session."""
    if find_binaries() is None:
        pytest.skip(
            "PostgreSQL is not installed (no initdb/pg_ctl/postgres in /usr/lib/postgresql/*/bin or PATH)"
        )
    server = TempPostgres.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture()
def pg_url(pg_server: TempPostgres) -> str:
    """The URL of a new, empty database on the session's server."""
    return pg_server.new_database()


@pytest.fixture()
def pg_env(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """pg_url, also exported as FACEPIPE_STORE (for child processes and Settings())."""
    monkeypatch.setenv("FACEPIPE_STORE", pg_url)
    return pg_url
