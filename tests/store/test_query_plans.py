"""SQLite finds faces by FaceId through face_id's unique index, not by walking the collection:
AssociateFaces, DeleteFaces and ListFaces with FaceIds stay as fast at 1M faces as at 1,000."""

from __future__ import annotations

import uuid
from pathlib import Path

from pipeline.config import Settings
from pipeline.store import open_store


def _plans_of(tx: object, run: object) -> list[str]:
    """EXPLAIN QUERY PLAN of every faces statement naming face_id IN that ``run`` executes."""
    conn = tx.conn  # type: ignore[attr-defined]
    traced: list[str] = []
    conn.set_trace_callback(traced.append)
    try:
        run()  # type: ignore[operator]
    finally:
        conn.set_trace_callback(None)
    plans = []
    for statement in traced:
        if "face_id IN" in statement:
            rows = conn.execute("EXPLAIN QUERY PLAN " + statement).fetchall()
            plans.append(" | ".join(str(tuple(r)[-1]) for r in rows))
    return plans


def test_lookups_by_face_id_use_the_face_id_index(tmp_path: Path) -> None:
    store = open_store(Settings(data_dir=tmp_path / "home", cache_dir=tmp_path / "cache"))
    try:
        with store.write() as tx:
            coll = tx.insert_collection("c", "arn", "1.0", 4, {})
        face_ids = [str(uuid.uuid4()) for _ in range(3)]
        with store.read() as tx:
            plans = _plans_of(tx, lambda: tx.faces_by_id(coll, face_ids))
            plans += _plans_of(tx, lambda: tx.list_faces(coll, 0, 10, face_ids=face_ids))
            plans += _plans_of(tx, lambda: tx.list_faces(coll, 0, 10, user_id="u", face_ids=face_ids))
        assert len(plans) == 3, plans
        for plan in plans:
            assert "sqlite_autoindex_faces" in plan and "faces_by_collection" not in plan, plan
    finally:
        store.close()
