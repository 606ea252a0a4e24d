"""Deletion erases, end to end: a real ``facepipe serve`` (loopback, real models, umask 022) indexes
faces from photos, an ``index-folder`` job indexes more beside it, then DeleteFaces, DeleteUser and
DeleteCollection run through HTTP. Every byte of the data directory is scanned for the deleted
vectors and centroid while the server runs and again after SIGKILL: none is found, every kept
face is, and every file is owner-only."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.support.erasure import files_holding, loose_modes
from tests.support.server import FACEPIPE, ServeProcess, clean_env, facepipe_serve, rekognition_client

THRESHOLDS = {"exact": None, "quantized": "16"}
"""FACEPIPE_ANN_THRESHOLD per index kind: the "keep" collection gets about 24 faces."""


def server_env(ann_threshold: str | None) -> dict[str, str]:
    env = clean_env(FACEPIPE_THREADS="2")
    if ann_threshold is not None:
        env["FACEPIPE_ANN_THRESHOLD"] = ann_threshold
    return env


def with_umask_022() -> None:
    os.umask(0o022)


def start_server(data_dir: Path, ann_threshold: str | None) -> ServeProcess:
    """The installed `facepipe serve --no-auth` over ``data_dir`` under umask 022, healthy."""
    return facepipe_serve(
        data_dir,
        "--no-auth",
        env=server_env(ann_threshold),
        command=(str(FACEPIPE),),
        preexec_fn=with_umask_022,
    )


def client(server: ServeProcess) -> Any:
    return rekognition_client(server.url, read_timeout=120)


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=92)
    return out.getvalue()


def group_photo_variants(sample_images: Path) -> list[bytes]:
    """The 6-face group photo as it is, mirrored, and smaller: different pixels, different vectors."""
    photo = Image.open(sample_images / "t1.jpg")
    smaller = photo.resize((photo.width * 7 // 8, photo.height * 7 // 8))
    return [jpeg(photo), jpeg(ImageOps.mirror(photo)), jpeg(smaller), jpeg(ImageOps.mirror(smaller))]


def vectors_in_store(data_dir: Path) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """({collection: {FaceId: vector}}, {UserId: centroid}) read from the store beside the server."""
    conn = sqlite3.connect(f"file:{data_dir / 'facepipe.sqlite3'}?mode=ro", uri=True)
    try:
        faces: dict[str, dict[str, np.ndarray]] = {}
        query = "SELECT c.name, f.face_id, f.vector FROM faces f JOIN collections c ON c.id = f.collection_id"
        for name, face_id, blob in conn.execute(query):
            faces.setdefault(name, {})[face_id] = np.frombuffer(blob, dtype="<f4")
        centroids = {
            user_id: np.frombuffer(blob, dtype="<f4")
            for user_id, blob in conn.execute(
                "SELECT user_id, centroid FROM users WHERE centroid IS NOT NULL"
            )
        }
        return faces, centroids
    finally:
        conn.close()


@pytest.fixture()
def folder_of_photos(tmp_path: Path, sample_images: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("Tom_Hanks_54745.png", "mask_white.jpg", "mask_blue.jpg"):
        (folder / name).write_bytes((sample_images / name).read_bytes())
    return folder


@pytest.fixture()
def server_process() -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for server in started:
        server.kill()


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(THRESHOLDS))
def test_deleted_vectors_are_nowhere_in_the_data_directory(
    tmp_path: Path,
    kind: str,
    sample_images: Path,
    folder_of_photos: Path,
    server_process: list[ServeProcess],
) -> None:
    if not FACEPIPE.is_file():
        pytest.skip(f"the facepipe command is not installed next to {sys.executable}")
    data_dir = tmp_path / "home"
    server_process.append(start_server(data_dir, THRESHOLDS[kind]))
    rek = client(server_process[-1])
    rek.create_collection(CollectionId="keep")
    for i, photo in enumerate(group_photo_variants(sample_images)):
        rek.index_faces(CollectionId="keep", Image={"Bytes": photo}, ExternalImageId=f"group-{i}")
    job = subprocess.run(
        [
            *(str(FACEPIPE), "index-folder", str(folder_of_photos), "--collection-id", "folder"),
            *("--create-collection", "--data-dir", str(data_dir), "--quiet"),
        ],
        env=server_env(THRESHOLDS[kind]),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=with_umask_022,
    )
    assert job.returncode == 0, job.stderr[-3000:]
    keep_ids = [f["FaceId"] for f in rek.list_faces(CollectionId="keep", MaxResults=100)["Faces"]]
    folder_ids = [f["FaceId"] for f in rek.list_faces(CollectionId="folder", MaxResults=100)["Faces"]]
    assert len(keep_ids) >= 20 and folder_ids
    rek.create_user(CollectionId="keep", UserId="u")
    rek.associate_faces(CollectionId="keep", UserId="u", FaceIds=keep_ids[:3], UserMatchThreshold=0)
    # the server now holds both collections' indexes and the centroid cache in memory; a quantized
    # index is also saved in indexes/
    rek.search_faces(CollectionId="keep", FaceId=keep_ids[5])
    rek.search_faces(CollectionId="folder", FaceId=folder_ids[0])
    rek.search_users(CollectionId="keep", FaceId=keep_ids[5])
    if kind == "quantized":
        assert list((data_dir / "indexes").glob("*.faiss"))
    faces, centroids = vectors_in_store(data_dir)
    deleted_ids = keep_ids[10:15]
    erased = [faces["keep"][f] for f in deleted_ids] + [centroids["u"]] + list(faces["folder"].values())
    kept = [v for f, v in faces["keep"].items() if f not in deleted_ids]
    assert len(files_holding(data_dir, erased + kept)) == len(erased) + len(kept)  # the scan sees them

    assert len(rek.delete_faces(CollectionId="keep", FaceIds=deleted_ids)["DeletedFaces"]) == 5
    rek.delete_user(CollectionId="keep", UserId="u")
    rek.delete_collection(CollectionId="folder")

    while_running = files_holding(data_dir, erased)
    assert while_running == {}, while_running
    assert len(files_holding(data_dir, kept)) == len(kept)
    assert loose_modes(data_dir) == []
    assert (data_dir / "jobs.sqlite3").is_file()

    server_process[0].kill()
    after_kill = files_holding(data_dir, erased)
    assert after_kill == {}, after_kill
    assert len(files_holding(data_dir, kept)) == len(kept)
    assert loose_modes(data_dir) == []

    # and the store the killed server left serves the kept faces
    server_process.append(start_server(data_dir, THRESHOLDS[kind]))
    rek = client(server_process[-1])
    listed = {f["FaceId"] for f in rek.list_faces(CollectionId="keep", MaxResults=100)["Faces"]}
    assert listed == set(keep_ids) - set(deleted_ids)
    matches = rek.search_faces(CollectionId="keep", FaceId=keep_ids[0], FaceMatchThreshold=0, MaxFaces=100)
    assert not {m["Face"]["FaceId"] for m in matches["FaceMatches"]} & set(deleted_ids)
    assert files_holding(data_dir, erased) == {}
