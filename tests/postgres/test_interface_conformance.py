"""The PostgreSQL backend keeps the store contract: every member of the interface, and every public
method of the SQLite transaction (the FAISS catch-up uses a few beyond the interface), with the same
parameters and defaults. Needs psycopg, not a server."""

from __future__ import annotations

import inspect

import pytest

from pipeline.store import db
from pipeline.store.interface import FaceStore, StoreTransaction
from pipeline.store.postgres import PostgresDatabase, PostgresStore, PostgresTx
from tests.store.test_interface import members


def public_methods(cls: type) -> list[str]:
    return sorted(name for name, value in vars(cls).items() if callable(value) and not name.startswith("_"))


@pytest.mark.parametrize(
    ("names", "reference", "implementation"),
    [
        (members(StoreTransaction), StoreTransaction, PostgresTx),
        (members(FaceStore), FaceStore, PostgresStore),
        (public_methods(db.Tx), db.Tx, PostgresTx),
        (["read", "write", "erase_log", "reclaim_space", "close"], db.Database, PostgresDatabase),
    ],
)
def test_the_postgresql_backend_has_the_same_members(
    names: list[str], reference: type, implementation: type
) -> None:
    assert names
    for name in names:
        wanted = inspect.signature(getattr(reference, name))
        got = inspect.signature(getattr(implementation, name))
        assert list(got.parameters) == list(wanted.parameters), name
        for param, expected in wanted.parameters.items():
            assert got.parameters[param].default == expected.default, f"{name}({param})"
    fresh = PostgresTx(None, writable=True)  # type: ignore[arg-type]  # no query runs
    for flag in ("deleted_faces", "deleted_users", "deleted_collections"):  # the store's erasure reads them
        assert getattr(fresh, flag) == set()
