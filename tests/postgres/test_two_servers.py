"""Two `facepipe serve` processes on one PostgreSQL database, real boto3 clients alternating between
them: what one server writes the other searches at once, DeleteCollection on one is seen by the
other, and a server SIGKILLed in the middle of writes loses nothing it acknowledged while the
other keeps serving."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.support.server import FACEPIPE, ServeProcess, free_port, rekognition_client

pytestmark = pytest.mark.slow

ACCESS_KEY, SECRET_KEY = "AKIDSHARED", "shared-secret"
"""The key pair both servers accept when started with ``signed=True``."""


class Server(ServeProcess):
    """One `facepipe serve` child on a free loopback port, on the PostgreSQL ``store``
    (FACEPIPE_STORE, or the --store option with ``by_flag``); --no-auth unless ``signed``, which
    accepts ACCESS_KEY/SECRET_KEY."""

    def __init__(self, data_dir: Path, store: str, by_flag: bool = False, signed: bool = False) -> None:
        port = free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, FACEPIPE_THREADS="1")
        env.pop("FACEPIPE_STORE", None)
        store_option = ["--store", store] if by_flag else []
        if not by_flag:
            env["FACEPIPE_STORE"] = store
        auth_option = [] if signed else ["--no-auth"]
        if signed:
            env["FACEPIPE_CREDENTIALS"] = f"{ACCESS_KEY}:{SECRET_KEY}"
        argv = [str(FACEPIPE), "serve", "--host", "127.0.0.1", "--port", str(port), *auth_option,
                "--data-dir", str(data_dir), "--threads", "4", *store_option]  # fmt: skip
        super().__init__(argv, port, data_dir / f"server-{port}.log", env, new_session=True)

    def client(self) -> Any:
        return rekognition_client(self.url, read_timeout=60)

    def client_signed(self) -> Any:
        """A boto3 client signing with the key pair of ``signed=True`` servers."""
        return rekognition_client(
            self.url, ACCESS_KEY, SECRET_KEY, retries={"max_attempts": 3}, read_timeout=60
        )


@pytest.fixture()
def two_servers(pg_url: str, tmp_path: Path) -> Iterator[list[Server]]:
    # one server is given the store by FACEPIPE_STORE, the other by --store
    servers = [Server(tmp_path / "a", pg_url), Server(tmp_path / "b", pg_url, by_flag=True)]
    try:
        for server in servers:
            server.wait_healthy(90)
        yield servers
    finally:
        for server in servers:
            server.stop()


def photos(shared_faces: Path, person: str, count: int) -> list[bytes]:
    folder = shared_faces / "celeb5" / person
    return [p.read_bytes() for p in sorted(folder.iterdir())[:count]]


def test_writes_on_one_server_are_seen_by_the_other(two_servers: list[Server], shared_faces: Path) -> None:
    a, b = (s.client() for s in two_servers)
    a.create_collection(CollectionId="shared")
    images = photos(shared_faces, "mindy_kaling", 6)
    face_ids = []
    for i, image in enumerate(images):
        writer, reader = (a, b) if i % 2 == 0 else (b, a)  # alternate which server writes
        record = writer.index_faces(CollectionId="shared", Image={"Bytes": image}, MaxFaces=1)["FaceRecords"]
        face_ids.append(record[0]["Face"]["FaceId"])
        found = reader.search_faces(
            CollectionId="shared", FaceId=face_ids[-1], FaceMatchThreshold=0, MaxFaces=50
        )
        assert {m["Face"]["FaceId"] for m in found["FaceMatches"]} == set(face_ids[:-1])
    b.create_user(CollectionId="shared", UserId="mindy")
    a.associate_faces(CollectionId="shared", UserId="mindy", FaceIds=face_ids[:3], UserMatchThreshold=0)
    users = b.search_users(CollectionId="shared", FaceId=face_ids[4], UserMatchThreshold=0)["UserMatches"]
    assert [u["User"]["UserId"] for u in users] == ["mindy"]
    token = {
        "CollectionId": "shared",
        "UserId": "mindy",
        "FaceIds": [face_ids[3]],
        "ClientRequestToken": "t1",
    }
    first, again = a.associate_faces(**token), b.associate_faces(**token)
    assert first["AssociatedFaces"] == again["AssociatedFaces"] == [{"FaceId": face_ids[3]}]
    assert b.describe_collection(CollectionId="shared")["UserCount"] == 1
    a.delete_collection(CollectionId="shared")
    with pytest.raises(b.exceptions.ResourceNotFoundException):
        b.search_faces(CollectionId="shared", FaceId=face_ids[0])
    assert b.list_collections()["CollectionIds"] == []


def test_sigkill_of_one_server_during_writes_loses_nothing_it_acknowledged(
    two_servers: list[Server], shared_faces: Path
) -> None:
    victim, survivor = two_servers
    a, b = victim.client(), survivor.client()
    a.create_collection(CollectionId="k")
    images = photos(shared_faces, "jerry_seinfeld", 6) + photos(shared_faces, "madonna", 6)
    acknowledged: list[str] = []
    stop = threading.Event()

    def write_loop() -> None:
        i = 0
        while not stop.is_set():
            try:
                out = a.index_faces(
                    CollectionId="k",
                    Image={"Bytes": images[i % len(images)]},
                    ExternalImageId=f"img{i}",
                    MaxFaces=1,
                )
            except Exception:
                return  # the server is gone
            acknowledged.extend(r["Face"]["FaceId"] for r in out["FaceRecords"])
            i += 1

    writer = threading.Thread(target=write_loop)
    writer.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.kill()
    stop.set()
    writer.join(60)
    assert len(acknowledged) >= 4
    listed = b.list_faces(CollectionId="k", MaxResults=4096)["Faces"]
    stored = {f["FaceId"] for f in listed}
    assert set(acknowledged) <= stored, "an acknowledged face was lost"
    assert b.describe_collection(CollectionId="k")["FaceCount"] == len(stored)
    (more,) = b.index_faces(
        CollectionId="k", Image={"Bytes": images[0]}, ExternalImageId="after", MaxFaces=1
    )["FaceRecords"]
    found = b.search_faces(
        CollectionId="k", FaceId=more["Face"]["FaceId"], FaceMatchThreshold=0, MaxFaces=4096
    )
    assert len(found["FaceMatches"]) == len(stored)


def test_a_request_accepted_by_one_server_is_a_replay_on_the_other(pg_url: str, tmp_path: Path) -> None:
    """Servers sharing credentials and a PostgreSQL store share the SigV4 replay record: the exact
    bytes of a signed request that server A answered are refused by server B. Both sit behind one
    name (as behind a load balancer), so the signed Host header fits either."""
    servers = [Server(tmp_path / "a", pg_url, signed=True), Server(tmp_path / "b", pg_url, signed=True)]
    try:
        for server in servers:
            server.wait_healthy(90)
        body = json.dumps({"CollectionId": "replayed"}).encode()
        request = AWSRequest(
            method="POST",
            url="http://facepipe.lb/",
            data=body,
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": "RekognitionService.CreateCollection",
            },
        )
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "rekognition", "us-east-1").add_auth(request)
        signed_headers = {"Host": "facepipe.lb", **dict(request.headers.items())}

        def send(server: Server) -> tuple[int, dict[str, Any]]:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                connection.request("POST", "/", body=body, headers=signed_headers)
                response = connection.getresponse()
                return response.status, json.loads(response.read() or b"{}")
            finally:
                connection.close()

        status, answer = send(servers[0])
        assert status == 200, answer
        status, answer = send(servers[1])
        assert status == 400 and answer["__type"].endswith("ThrottlingException"), answer
        assert "already been used" in answer["Message"]
        listed = servers[1].client_signed().list_collections()["CollectionIds"]
        assert listed == ["replayed"], "the replay must not have run again"
    finally:
        for server in servers:
            server.stop()
