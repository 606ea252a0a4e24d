"""pipeline.testing: boto3 and botocore Rekognition clients answered in process by a real facepipe.

Real boto3 clients, real models on insightface's sample photos; endpoints that would be reached
if a request left the process are closed loopback ports, so a request that is not answered in
process fails with EndpointConnectionError instead of reaching anything.
"""

from __future__ import annotations

import threading
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from pipeline.config import Settings
from pipeline.service import FacePipe
from pipeline.testing import rekognition
from tests.support.server import free_port

NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2)


@pytest.fixture()
def closed_endpoint() -> str:
    """http://127.0.0.1:<port> where nothing listens (the port was free a moment ago)."""
    return f"http://127.0.0.1:{free_port()}"


def test_clients_made_inside_the_block_are_answered_by_a_real_facepipe(
    tmp_path: Path, sample_images: Path, closed_endpoint: str
) -> None:
    group = (sample_images / "t1.jpg").read_bytes()
    with rekognition(data_dir=tmp_path / "store") as fp:
        # an endpoint the application was configured with does not matter inside the block
        client = boto3.client("rekognition", region_name="eu-west-1", endpoint_url=closed_endpoint)
        client.create_collection(CollectionId="family")
        indexed = client.index_faces(CollectionId="family", Image={"Bytes": group}, ExternalImageId="t1.jpg")
        assert len(indexed["FaceRecords"]) == 6
        assert indexed["FaceModelVersion"] == "yunet-2023mar+sface-2021dec"
        face_ids = {record["Face"]["FaceId"] for record in indexed["FaceRecords"]}

        # botocore's paginator and its response parsing run unchanged
        other = boto3.Session(region_name="ap-south-1").client("rekognition")
        pages = list(other.get_paginator("list_faces").paginate(CollectionId="family", MaxResults=4))
        assert [len(page["Faces"]) for page in pages] == [4, 2]
        assert {face["FaceId"] for page in pages for face in page["Faces"]} == face_ids

        plain = botocore.session.get_session().create_client("rekognition", region_name="us-west-2")
        matches = plain.search_faces_by_image(CollectionId="family", Image={"Bytes": group}, MaxFaces=1)
        assert matches["FaceMatches"][0]["Similarity"] > 99
        assert matches["FaceMatches"][0]["Face"]["FaceId"] in face_ids

        with pytest.raises(ClientError) as missing:
            client.describe_collection(CollectionId="absent")
        assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
        with pytest.raises(client.exceptions.InvalidParameterException, match="userId"):
            client.create_user(CollectionId="family", UserId="bad id!")
        assert fp.service.call("DescribeCollection", {"CollectionId": "family"})["FaceCount"] == 6

    reopened = FacePipe(Settings.from_env(data_dir=tmp_path / "store"))  # the store stays in data_dir
    try:
        assert reopened.call("ListCollections", {})["CollectionIds"] == ["family"]
    finally:
        reopened.close()


def test_no_credentials_are_needed_or_looked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample_images: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_EC2_METADATA_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    # were credentials looked up, botocore would try the instance metadata service here
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
    with rekognition(data_dir=tmp_path) as fp:
        client = fp.client()
        assert client.list_collections()["CollectionIds"] == []
        assert client._request_signer._credentials.access_key == "facepipe-in-process"
        keyed = boto3.client(
            "rekognition", region_name="eu-west-1", aws_access_key_id="AKID", aws_secret_access_key="s"
        )
        assert keyed.list_collections()["CollectionIds"] == []
        assert keyed._request_signer._credentials.access_key == "AKID"


def test_other_services_still_go_out(tmp_path: Path, closed_endpoint: str) -> None:
    with rekognition(data_dir=tmp_path):
        s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=closed_endpoint, config=NO_RETRIES)
        with pytest.raises(EndpointConnectionError):
            s3.list_buckets()


def test_facepipe_answers_rekognition_inside_moto_which_answers_s3(tmp_path: Path) -> None:
    moto = pytest.importorskip("moto", reason="moto is in the test extra")
    before = boto3.client("rekognition", region_name="us-east-1")  # an AWS URL, which moto claims
    with moto.mock_aws(), rekognition(data_dir=tmp_path) as fp:
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="photos")
        s3.put_object(Bucket="photos", Key="a.txt", Body=b"x")
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="photos")["Contents"]] == ["a.txt"]
        client = boto3.client("rekognition", region_name="us-east-1")
        created = client.create_collection(CollectionId="family")
        assert created["FaceModelVersion"] == "yunet-2023mar+sface-2021dec"  # not moto's canned answer
        assert client.list_collections()["CollectionIds"] == ["family"]
        assert fp.attach(before).list_collections()["CollectionIds"] == ["family"]


def test_clients_from_before_the_block_keep_their_endpoint_unless_attached(
    tmp_path: Path, closed_endpoint: str
) -> None:
    before = boto3.client(
        "rekognition", region_name="us-east-1", endpoint_url=closed_endpoint, config=NO_RETRIES
    )
    attached = boto3.client(
        "rekognition", region_name="us-east-1", endpoint_url=closed_endpoint, config=NO_RETRIES
    )
    with rekognition(data_dir=tmp_path) as fp:
        with pytest.raises(EndpointConnectionError):
            before.list_collections()
        assert fp.attach(attached).list_collections()["CollectionIds"] == []
        inside = boto3.client(
            "rekognition", region_name="us-east-1", endpoint_url=closed_endpoint, config=NO_RETRIES
        )
        assert inside.list_collections()["CollectionIds"] == []
        with pytest.raises(ValueError, match="Rekognition client"):
            fp.attach(boto3.client("s3", region_name="us-east-1"))
    for client in (attached, inside):  # after the block, back to their own endpoint
        with pytest.raises(EndpointConnectionError):
            client.list_collections()


def test_one_block_at_a_time_and_a_temporary_store_is_removed(tmp_path: Path) -> None:
    with rekognition() as fp:
        temporary = fp.data_dir
        fp.client().create_collection(CollectionId="scratch")
        assert temporary.is_dir()
        with pytest.raises(RuntimeError, match="do not nest"), rekognition(data_dir=tmp_path):
            pass
    assert not temporary.exists()
    with rekognition(data_dir=tmp_path) as again:  # usable again once the first ended
        assert again.client().list_collections()["CollectionIds"] == []


def test_threads_of_the_application_share_one_service(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with rekognition(data_dir=tmp_path) as fp:
        fp.client().create_collection(CollectionId="shared")

        def create_users(worker: int) -> None:
            try:
                client = boto3.client("rekognition", region_name="us-east-1")
                for n in range(5):
                    client.create_user(CollectionId="shared", UserId=f"user-{worker}-{n}")
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=create_users, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        users = fp.client().list_users(CollectionId="shared")["Users"]
        assert len(users) == 20


def test_the_store_is_embedded_even_when_facepipe_store_names_a_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An application's tests run where $FACEPIPE_STORE points at a shared PostgreSQL: the
    in-process facepipe still keeps its collections in data_dir and never connects there."""
    monkeypatch.setenv("FACEPIPE_STORE", "postgresql://nobody:wrong@127.0.0.1:1/not_a_database")
    with rekognition(data_dir=tmp_path / "store") as fp:
        fp.client().create_collection(CollectionId="local")
        assert fp.client().list_collections()["CollectionIds"] == ["local"]
        assert fp.service.settings.store is None
    assert any((tmp_path / "store").iterdir())
    with rekognition() as temporary:
        assert temporary.client().list_collections()["CollectionIds"] == []
