"""`facepipe index-folder --engine ray` writing to a shared PostgreSQL store while two `facepipe serve`
processes on the same database answer real boto3 clients.

The job commits one batch of faces per store transaction and writes its report line only after the
commit, so every face the report names must be found at once by a SearchFaces on either server from
an earlier face of the same person (a search catches up from the change log first). While the job runs the test follows the report and
checks that; it also samples DescribeCollection on both servers, which must see the collection grow
(a count between 0 and the total). At the end every face the job indexed is listed by, and found
by a search on, each server.

Bounded: 30 photos of ../shared/data/faces/celeb5 (6 of each of 5 people), one Ray actor, the job
limited to JOB_TIMEOUT_S; loopback only. Skips when the photos, Ray or PostgreSQL are missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Settings
from pipeline.jobs.ray_engine import actor_settings
from tests.support.server import FACEPIPE, ServeProcess, facepipe_serve, rekognition_client

PEOPLE = ("ben_afflek", "elton_john", "jerry_seinfeld", "madonna", "mindy_kaling")
PHOTOS_PER_PERSON = 6
BATCH_SIZE = 1
"""Images per store transaction of the job: one commit per photo, 30 in all."""
JOB_TIMEOUT_S = 300.0
"""Longest the whole job may take (Ray's start included)."""


@pytest.fixture()
def servers(pg_url: str, tmp_path: Path) -> Iterator[list[ServeProcess]]:
    """Two `facepipe serve --no-auth` processes on the test's PostgreSQL database."""
    env = dict(os.environ, FACEPIPE_STORE=pg_url, FACEPIPE_THREADS="1")
    started: list[ServeProcess] = []
    try:
        for name in ("a", "b"):
            started.append(
                facepipe_serve(
                    tmp_path / f"server-{name}", "--no-auth", "--threads", "4", env=env, new_session=True
                )
            )
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.fixture()
def photo_folder(tmp_path: Path, shared_faces: Path) -> Path:
    """<person>/<n>.jpg: the first PHOTOS_PER_PERSON photos of each of PEOPLE."""
    folder = tmp_path / "photos"
    for person in PEOPLE:
        (folder / person).mkdir(parents=True)
        for n, photo in enumerate(sorted((shared_faces / "celeb5" / person).iterdir())[:PHOTOS_PER_PERSON]):
            shutil.copy(photo, folder / person / f"{n}{photo.suffix.lower()}")
    return folder


def _report_faces(report: Path) -> dict[str, str]:
    """FaceId -> person of every face in the job's report so far (complete lines only)."""
    if not report.exists():
        return {}
    faces: dict[str, str] = {}
    for line in report.read_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # being written
        entry = json.loads(line)
        for record in entry.get("FaceRecords", []):
            faces[record["FaceId"]] = entry["Path"].split("/")[0]
    return faces


def _listed(client: Any, collection: str) -> dict[str, str]:
    """FaceId -> ExternalImageId of every face ListFaces returns."""
    faces: dict[str, str] = {}
    kwargs: dict[str, Any] = {"CollectionId": collection, "MaxResults": 4096}
    while True:
        page = client.list_faces(**kwargs)
        faces.update({f["FaceId"]: f["ExternalImageId"] for f in page["Faces"]})
        if "NextToken" not in page:
            return faces
        kwargs["NextToken"] = page["NextToken"]


def test_ray_actors_are_not_given_the_store_url() -> None:
    settings = Settings(store="postgresql://facepipe:secret@db.internal:5432/faces", threads=8)
    given = actor_settings(settings, threads=2)
    assert given.store is None and given.threads == 2
    assert given.provider == settings.provider and given.cache_dir == settings.cache_dir


@pytest.mark.slow
def test_ray_job_on_the_shared_store_is_seen_by_both_servers(
    servers: list[ServeProcess], photo_folder: Path, tmp_path: Path, pg_url: str
) -> None:
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install 'facepipe[ray]')")
    clients = [rekognition_client(s.url, read_timeout=60) for s in servers]
    clients[0].create_collection(CollectionId="crowd")
    report = tmp_path / "report.jsonl"
    env = dict(os.environ, FACEPIPE_STORE=pg_url, FACEPIPE_PROVIDER="cpu")
    env.setdefault("FACEPIPE_CACHE", str(tmp_path / "model-cache"))
    job_log = tmp_path / "job.log"
    with job_log.open("w") as log:
        job = subprocess.Popen(
            [str(FACEPIPE), "index-folder", str(photo_folder), "--collection-id", "crowd", "--recursive",
             "--max-faces", "1", "--engine", "ray", "--workers", "1", "--batch-size", str(BATCH_SIZE),
             "--data-dir", str(tmp_path / "job-home"), "--report", str(report), "--quiet"],
            stdout=subprocess.PIPE, stderr=log, env=env, text=True, start_new_session=True,
        )  # fmt: skip
    seen: dict[str, str] = {}
    find_ms: list[float] = []
    counts_while_running: list[set[int]] = [set(), set()]
    started = time.monotonic()
    deadline = started + JOB_TIMEOUT_S
    try:
        while job.poll() is None:
            assert time.monotonic() < deadline, f"index-folder ran past {JOB_TIMEOUT_S} s"
            for face_id, person in _report_faces(report).items():
                if face_id in seen:
                    continue
                earlier = next((f for f, p in seen.items() if p == person), None)
                seen[face_id] = person
                for client in clients:  # committed before its report line: found at once
                    start = time.perf_counter()
                    matches = client.search_faces(
                        CollectionId="crowd", FaceId=earlier or face_id, FaceMatchThreshold=0, MaxFaces=4096
                    )
                    find_ms.append((time.perf_counter() - start) * 1000)
                    if earlier is not None:  # the new face is in the server's index already
                        assert face_id in {m["Face"]["FaceId"] for m in matches["FaceMatches"]}
            for i, client in enumerate(clients):
                counts_while_running[i].add(client.describe_collection(CollectionId="crowd")["FaceCount"])
            time.sleep(0.05)
        stdout, _ = job.communicate(timeout=30)
        job_s = time.monotonic() - started
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(10)
    assert job.returncode == 0, job_log.read_text()[-3000:]
    summary = json.loads(stdout)
    indexed = _report_faces(report)
    assert summary["FacesIndexed"] == len(indexed) >= len(PEOPLE) * (PHOTOS_PER_PERSON - 1)
    for counts in counts_while_running:  # each server saw the collection grow while the job ran
        assert counts - {0, len(indexed)}, f"no count between 0 and the total seen: {sorted(counts)}"
    for client in clients:
        listed = _listed(client, "crowd")
        assert set(listed) == set(indexed), "a server lists a different set of faces than the job indexed"
        assert client.describe_collection(CollectionId="crowd")["FaceCount"] == len(indexed)
        for face_id, person in indexed.items():
            same_person = {other for other, p in indexed.items() if p == person and other != face_id}
            matches = client.search_faces(
                CollectionId="crowd", FaceId=face_id, FaceMatchThreshold=0, MaxFaces=4096
            )["FaceMatches"]
            found = {m["Face"]["FaceId"] for m in matches}
            assert same_person <= found, f"{person}: a face indexed by the job is not found by a search"
    print(
        f"ray job on PostgreSQL: {len(indexed)} faces, {job_s:.1f} s in all, {summary['Seconds']} s "
        f"indexing; SearchFaces of a face "
        f"just reported, p50 {statistics.median(find_ms):.1f} ms, max {max(find_ms):.1f} ms "
        f"({len(find_ms)} searches over 2 servers); counts seen while running: "
        f"{[sorted(c) for c in counts_while_running]}"
    )
