"""`facepipe serve` on a PostgreSQL store keeps a local index snapshot: stopped (SIGTERM) it saves
the index in its data directory, started again it loads it (its log says so) and answers SearchFaces
as before; a face deleted while it was stopped does not come back, and its snapshot is rewritten
without it when the server stops again."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.store import NewFace
from pipeline.store.db import vector_to_blob
from pipeline.store.postgres import SNAPSHOT_MIN_FACES, PostgresStore
from pipeline.vision.packs import read_manifest
from tests.support.server import ServeProcess, facepipe_serve, rekognition_client

pytestmark = pytest.mark.slow

DIM = 128
FACES = SNAPSHOT_MIN_FACES + 100
MODEL_VERSION = str(read_manifest("default")["model_version"])
"""The server's engine scores only collections of its own model."""


def _load_faces(url: str) -> tuple[list[str], np.ndarray]:
    """Collection 'snap' with FACES random 128-d faces; returns their FaceIds and vectors."""
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(FACES, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    face_ids = [str(uuid.uuid4()) for _ in range(FACES)]
    store = PostgresStore(url, listen=False)
    try:
        with store.write() as tx:
            coll = tx.insert_collection(
                "snap",
                "arn:aws:rekognition:us-east-1:000000000000:collection/snap",
                MODEL_VERSION,
                DIM,
                {},
            )
            for i, (face_id, vector) in enumerate(zip(face_ids, vectors, strict=True)):
                tx.insert_face(coll, NewFace(face_id, face_id, None, f"k{i}", 0, 0, 1, 1, 99.0, vector))
    finally:
        store.close()
    return face_ids, vectors


def _serve(data_dir: Path, url: str) -> ServeProcess:
    env = dict(os.environ, FACEPIPE_STORE=url, FACEPIPE_THREADS="1")
    return facepipe_serve(
        data_dir, "--no-auth", env=env, log=data_dir.parent / f"{data_dir.name}-{uuid.uuid4().hex[:6]}.log"
    )


def _matches(client: Any, face_id: str) -> list[tuple[str, float]]:
    found = client.search_faces(CollectionId="snap", FaceId=face_id, MaxFaces=20, FaceMatchThreshold=0)
    return [(m["Face"]["FaceId"], m["Similarity"]) for m in found["FaceMatches"]]


def test_a_restarted_server_opens_its_snapshot(pg_url: str, tmp_path: Path) -> None:
    face_ids, vectors = _load_faces(pg_url)
    data_dir = tmp_path / "server"
    first = _serve(data_dir, pg_url)
    try:
        client = rekognition_client(first.url)
        before = {f: _matches(client, f) for f in face_ids[:5]}
    finally:
        first.stop()
    (snapshot,) = data_dir.glob("snapshots/postgresql-*/collection-*.faiss")
    deleted = face_ids[7]
    assert vector_to_blob(vectors[7]) in snapshot.read_bytes()

    other = PostgresStore(pg_url, listen=False)  # another server deletes a face meanwhile
    try:
        with other.write() as tx:
            coll = tx.collection("snap")
            tx.delete_faces(coll, [tx.faces_by_id(coll, [deleted])[deleted].label])
    finally:
        other.close()

    second = _serve(data_dir, pg_url)
    try:
        assert "opened from its snapshot" in second.output()
        assert not snapshot.exists(), "the snapshot kept a face deleted while the server was stopped"
        client = rekognition_client(second.url)
        for face_id, matches in before.items():  # the same answers, less the deleted face
            expected = [m for m in matches if m[0] != deleted]
            assert _matches(client, face_id)[: len(expected)] == expected
        nearest = _matches(client, face_ids[8])
        assert deleted not in {f for f, _ in nearest}
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.search_faces(CollectionId="snap", FaceId=deleted)
    finally:
        second.stop()
    (snapshot,) = data_dir.glob("snapshots/postgresql-*/collection-*.faiss")
    assert vector_to_blob(vectors[7]) not in snapshot.read_bytes()
