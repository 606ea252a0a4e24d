"""Errors after a deleting write has committed say so: a client told "nothing was committed" would
believe the faces are still there (and the database's erasure, VACUUM, would be skipped)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from pipeline.errors import InternalServerError
from pipeline.store import NewFace
from pipeline.store.postgres import PostgresStore, PostgresTx

DIM = 8


def test_a_failure_after_a_committed_deletion_says_the_deletion_is_committed(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PostgresStore(pg_url, listen=False)
    try:
        vector = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
        with store.write() as tx:
            coll = tx.insert_collection("c", "arn:c", "t", DIM, {})
            label = tx.insert_face(coll, NewFace(str(uuid.uuid4()), "i", None, "k", 0, 0, 1, 1, 99.0, vector))
        store.search(coll, vector, 5, -1.0)  # the index is held: the erasure reads the database
        vacuums: list[str] = []
        monkeypatch.setattr(store.database, "erase_log", lambda: vacuums.append("vacuum"))

        @contextmanager
        def lost() -> Iterator[PostgresTx]:
            raise InternalServerError(
                "the connection to the PostgreSQL store was lost (server closed the connection):"
                " nothing was committed; retry"
            )
            yield  # pragma: no cover

        with pytest.raises(InternalServerError) as caught, store.write() as tx:
            tx.delete_faces(tx.collection("c"), [label])
            monkeypatch.setattr(store.database, "read", lost)
        assert "the deletion is committed" in caught.value.message
        assert vacuums == ["vacuum"], "the database's erasure was skipped"
        monkeypatch.undo()
        with store.read() as tx:
            assert tx.faces_by_label([label]) == {}
        assert store.search(coll, vector, 5, -1.0) == []
    finally:
        store.close()
