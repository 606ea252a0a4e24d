"""SQLite: a failure after a deleting write has committed says the deletion is committed, and the
write-ahead log is still checkpointed (no deleted vector stays in it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import InternalServerError
from pipeline.store import NewFace, Store
from pipeline.store.db import Tx
from tests.support.erasure import files_holding

DIM = 8


def test_a_failure_after_a_committed_deletion_still_erases_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path)
    try:
        rng = np.random.default_rng(3)
        vectors = rng.normal(size=(2, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with store.write() as tx:
            coll = tx.insert_collection("c", "arn:c", "t", DIM, {})
            labels = [
                tx.insert_face(coll, NewFace(str(uuid.uuid4()), "i", None, f"k{i}", 0, 0, 1, 1, 99.0, v))
                for i, v in enumerate(vectors)
            ]
        store.search(coll, vectors[0], 5, -1.0)  # the index is held: the erasure reads the database

        @contextmanager
        def failing() -> Iterator[Tx]:
            raise InternalServerError("the database is locked")
            yield  # pragma: no cover

        with pytest.raises(InternalServerError) as caught, store.write() as tx:
            tx.delete_faces(tx.collection("c"), [labels[0]])
            monkeypatch.setattr(store.db, "read", failing)
        assert "the deletion is committed" in caught.value.message
        monkeypatch.undo()
        assert files_holding(tmp_path, [vectors[0]]) == {}, "the deleted vector stays in the WAL"
        assert files_holding(tmp_path, [vectors[1]]), "the kept face is not found (scan is void)"
        assert [label for label, _ in store.search(coll, vectors[0], 5, -1.0)] == [labels[1]]
    finally:
        store.close()
