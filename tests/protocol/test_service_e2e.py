"""The server on the real service and models: every operation through boto3, S3Object via a local S3."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pipeline.config import Settings
from pipeline.service import FacePipe
from tests.support.cli import AWS_CLI, Result, aws_env, run_command
from tests.support.server import (
    ThreadServer,
    raw_request,
    rekognition_client,
    s3_bucket,
    serve_service_in_thread,
)

BUCKET = "photos"


@pytest.fixture(scope="module")
def s3_endpoint(sample_images: Path) -> Iterator[str]:
    """A real S3 API (moto's server mode) on a loopback port, with one bucket of sample photos."""
    hanks = (sample_images / "Tom_Hanks_54745.png").read_bytes()
    with s3_bucket(BUCKET, {"people/hanks.png": hanks}) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[ThreadServer]:
    saved = {
        k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="s3-test", AWS_SECRET_ACCESS_KEY="s3-test", AWS_DEFAULT_REGION="us-east-1"
    )
    settings = Settings(data_dir=tmp_path_factory.mktemp("facepipe-home"), s3_endpoint_url=s3_endpoint)
    fp = FacePipe(settings)
    live = serve_service_in_thread(fp, None, max_body_bytes=16 << 20)
    yield live
    live.stop()
    fp.close()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def image(path: Path) -> dict[str, Any]:
    return {"Bytes": path.read_bytes()}


def error_code(call: Any, **params: Any) -> str:
    with pytest.raises(ClientError) as info:
        call(**params)
    return str(info.value.response["Error"]["Code"])


def test_every_operation_through_boto3(real_server: ThreadServer, sample_images: Path) -> None:
    c = rekognition_client(real_server.url, read_timeout=120)
    group, hanks = sample_images / "t1.jpg", sample_images / "Tom_Hanks_54745.png"
    assert c.create_collection(CollectionId="e2e")["StatusCode"] == 200
    assert "e2e" in c.list_collections()["CollectionIds"]

    indexed = c.index_faces(CollectionId="e2e", Image=image(group), ExternalImageId="group")
    group_ids = [r["Face"]["FaceId"] for r in indexed["FaceRecords"]]
    assert len(group_ids) == 6
    assert all(0 <= r["Face"]["BoundingBox"]["Left"] <= 1 for r in indexed["FaceRecords"])
    from_s3 = c.index_faces(
        CollectionId="e2e",
        Image={"S3Object": {"Bucket": BUCKET, "Name": "people/hanks.png"}},
        ExternalImageId="hanks",
        MaxFaces=1,
    )
    [hanks_id] = [r["Face"]["FaceId"] for r in from_s3["FaceRecords"]]
    described = c.describe_collection(CollectionId="e2e")
    assert described["FaceCount"] == 7 and described["CreationTimestamp"].year >= 2024
    listed = c.list_faces(CollectionId="e2e", MaxResults=4)
    assert len(listed["Faces"]) == 4 and listed["NextToken"]
    rest = c.list_faces(CollectionId="e2e", NextToken=listed["NextToken"])
    assert {f["FaceId"] for f in listed["Faces"] + rest["Faces"]} == {*group_ids, hanks_id}

    assert len(c.detect_faces(Image=image(group))["FaceDetails"]) == 6
    compared = c.compare_faces(SourceImage=image(hanks), TargetImage=image(hanks))
    assert compared["FaceMatches"][0]["Similarity"] > 99
    by_face = c.search_faces(CollectionId="e2e", FaceId=hanks_id)
    assert hanks_id not in [m["Face"]["FaceId"] for m in by_face["FaceMatches"]]
    by_image = c.search_faces_by_image(CollectionId="e2e", Image=image(hanks))
    assert by_image["FaceMatches"][0]["Face"]["FaceId"] == hanks_id
    assert by_image["SearchedFaceBoundingBox"]["Width"] > 0

    assert c.create_user(CollectionId="e2e", UserId="tom")["ResponseMetadata"]["HTTPStatusCode"] == 200
    associated = c.associate_faces(CollectionId="e2e", UserId="tom", FaceIds=[hanks_id])
    assert [f["FaceId"] for f in associated["AssociatedFaces"]] == [hanks_id]
    assert c.list_users(CollectionId="e2e")["Users"] == [{"UserId": "tom", "UserStatus": "ACTIVE"}]
    assert c.search_users(CollectionId="e2e", FaceId=hanks_id)["UserMatches"][0]["User"]["UserId"] == "tom"
    assert (
        c.search_users_by_image(CollectionId="e2e", Image=image(hanks))["UserMatches"][0]["User"]["UserId"]
        == "tom"
    )
    gone = c.disassociate_faces(CollectionId="e2e", UserId="tom", FaceIds=[hanks_id])
    assert [f["FaceId"] for f in gone["DisassociatedFaces"]] == [hanks_id]
    c.delete_user(CollectionId="e2e", UserId="tom")
    assert c.delete_faces(CollectionId="e2e", FaceIds=[group_ids[0]])["DeletedFaces"] == [group_ids[0]]
    assert c.delete_collection(CollectionId="e2e")["StatusCode"] == 200
    assert "e2e" not in c.list_collections()["CollectionIds"]


def test_service_errors_reach_boto3_as_modelled_exceptions(
    real_server: ThreadServer, sample_images: Path
) -> None:
    c = rekognition_client(real_server.url, read_timeout=120)
    c.create_collection(CollectionId="errors")
    assert error_code(c.describe_collection, CollectionId="missing") == "ResourceNotFoundException"
    assert (
        error_code(c.detect_faces, Image={"Bytes": b"not an image at all"}) == "InvalidImageFormatException"
    )
    missing = {"S3Object": {"Bucket": BUCKET, "Name": "nobody.jpg"}}
    with pytest.raises(c.exceptions.InvalidS3ObjectException):
        c.index_faces(CollectionId="errors", Image=missing)
    raw = rekognition_client(real_server.url, parameter_validation=False)
    assert error_code(raw.create_user, CollectionId="errors", UserId="bad id!") == "InvalidParameterException"
    assert error_code(raw.list_faces, CollectionId="errors", MaxResults="ten") == "SerializationException"
    assert c.describe_collection(CollectionId="errors")["FaceCount"] == 0


def test_aws_cli_on_the_real_service(real_server: ThreadServer, sample_images: Path) -> None:
    env = aws_env()
    base = [*AWS_CLI, "rekognition", "--endpoint-url", real_server.url, "--output", "json"]

    def aws(*args: str) -> Result:
        return run_command([*base, *args], env, timeout_s=120)

    created = aws("create-collection", "--collection-id", "cli-real")
    assert created.status == 0, created.stderr
    assert json.loads(created.stdout)["CollectionArn"].endswith("collection/cli-real")
    indexed = aws(
        "index-faces",
        "--collection-id",
        "cli-real",
        "--image-bytes",
        f"fileb://{sample_images / 't1.jpg'}",
        "--max-faces",
        "2",
        "--query",
        "length(FaceRecords)",
    )
    assert indexed.status == 0, indexed.stderr
    assert indexed.stdout.strip() == "2"
    listed = aws("list-faces", "--collection-id", "cli-real", "--query", "length(Faces)")
    assert listed.status == 0, listed.stderr
    assert listed.stdout.strip() == "2"
    bad = aws("search-faces", "--collection-id", "cli-real", "--face-id", "not-a-uuid")
    assert bad.status == 255 and "(InvalidParameterException)" in bad.stderr and bad.stdout == ""


def test_fuzzed_requests_on_the_real_service(real_server: ThreadServer, sample_images: Path) -> None:
    """Bounded protocol fuzzing: random targets, bodies, types and base64; no 5xx, collection unchanged."""
    import base64
    import json
    import random

    c = rekognition_client(real_server.url, read_timeout=120)
    c.create_collection(CollectionId="fuzz")
    face_id = c.index_faces(CollectionId="fuzz", Image=image(sample_images / "Tom_Hanks_54745.png"))[
        "FaceRecords"
    ][0]["Face"]["FaceId"]
    c.create_user(CollectionId="fuzz", UserId="kept")
    c.associate_faces(CollectionId="fuzz", UserId="kept", FaceIds=[face_id])

    def snapshot() -> tuple[Any, ...]:
        return (
            c.describe_collection(CollectionId="fuzz")["FaceCount"],
            [f["FaceId"] for f in c.list_faces(CollectionId="fuzz")["Faces"]],
            c.list_users(CollectionId="fuzz")["Users"],
        )

    before = snapshot()
    rng = random.Random(5)
    operations = [*real_server.service.operations, "Nope", ""]
    members = [
        "CollectionId",
        "UserId",
        "FaceIds",
        "FaceId",
        "Image",
        "MaxFaces",
        "SourceImage",
        "UserMatchThreshold",
        "ClientRequestToken",
    ]
    junk = base64.b64encode(bytes(rng.getrandbits(8) for _ in range(64))).decode()
    values: list[object] = [None, -3, 0, 1e308, True, "", "x" * 300, "bad id!", [], {}, [5], ["not-a-uuid"] * 101,
                            {"Bytes": "!!notbase64"}, {"Bytes": junk}, {"Bytes": 7}, {"S3Object": {"Bucket": 1}}, {"S3Object": {}}]  # fmt: skip
    statuses, codes = [], set()
    for _ in range(150):
        roll = rng.random()
        if roll < 0.25:
            body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300)))
        elif roll < 0.85:
            body = json.dumps(
                {rng.choice(members): rng.choice(values) for _ in range(rng.randrange(1, 5))}
            ).encode()
        else:
            body = json.dumps(rng.choice(values)).encode()
        headers = {
            "X-Amz-Target": f"RekognitionService.{rng.choice(operations)}",
            "Content-Type": "application/x-amz-json-1.1",
        }
        status, _, answer = raw_request(real_server.url, body, headers)
        statuses.append(status)
        if status != 200:
            error = json.loads(answer)
            assert set(error) == {"__type", "Message"}
            codes.add(error["__type"])
    assert max(statuses) < 500, statuses
    # protocol-level and service-level rejections both happened
    assert {"SerializationException", "InvalidParameterException", "UnknownOperationException"} <= codes, (
        codes
    )
    assert snapshot() == before
