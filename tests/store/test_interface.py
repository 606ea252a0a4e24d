"""The store interface is the contract: the SQLite backend implements every member with the same
parameters, and the operation families reach the store only through it."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from pipeline.store import Store, db
from pipeline.store.interface import FaceStore, StoreTransaction

SERVICE = Path(__file__).resolve().parents[2] / "pipeline" / "service"

INTERFACE_NAMES = {
    "CollectionRow",
    "FaceRow",
    "NewFace",
    "UserRow",
    "UserMatch",
    "Tx",
    "StoreTransaction",
    "FaceStore",
    "normalized_mean",
}
"""What pipeline.store exports of the interface and its records (``Tx`` names StoreTransaction)."""


def members(protocol: type) -> list[str]:
    return sorted(
        name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_")
    )


@pytest.mark.parametrize(("protocol", "implementation"), [(StoreTransaction, db.Tx), (FaceStore, Store)])
def test_the_sqlite_backend_implements_every_member(protocol: type, implementation: type) -> None:
    assert members(protocol)
    for name in members(protocol):
        wanted = inspect.signature(getattr(protocol, name))
        got = inspect.signature(getattr(implementation, name))
        assert list(got.parameters) == list(wanted.parameters), name
        for param, expected in wanted.parameters.items():
            assert got.parameters[param].default == expected.default, f"{name}({param})"


def test_operation_families_import_only_the_interface_from_the_store() -> None:
    """Every pipeline/service module but the composition root (FacePipe, which opens the store)."""
    for path in sorted(SERVICE.glob("*.py")):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline.store"):
                assert node.module in (
                    "pipeline.store",
                    "pipeline.store.interface",
                    "pipeline.store.records",
                ), f"{path.name} imports {node.module}"
                names = {alias.name for alias in node.names}
                assert names <= INTERFACE_NAMES, f"{path.name} imports {sorted(names - INTERFACE_NAMES)}"
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("pipeline.store") for a in node.names), path.name
