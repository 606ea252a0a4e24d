"""Side by side with the real AWS CLI against `facepipe serve` (started here on a free port).

The same request through `aws rekognition ... --endpoint-url`, `facepipe ... --endpoint-url` and
`facepipe ...` in local mode on the server's own store must print the same bytes and exit with
the same status.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import AWS_CLI, Result, Runner, aws_env, run_command, running_server

FORMATS = ("json", "text", "table")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(URL, data dir) of a `facepipe serve --no-auth` holding collections cli-0..2 and faces."""
    data_dir = tmp_path_factory.mktemp("served-store")
    with running_server(data_dir) as url:
        yield url, data_dir


@pytest.fixture(scope="module")
def populated(server: tuple[str, Path], sample_images: Path) -> tuple[str, Path]:
    """The server after the AWS CLI created three collections and indexed t1.jpg into cli-1."""
    url, data_dir = server
    env, aws = aws_env(), [*AWS_CLI, "rekognition"]
    for number in range(3):
        created = run_command(
            [*aws, "create-collection", "--collection-id", f"cli-{number}", "--endpoint-url", url], env
        )
        assert created.status == 0, created.stderr
    image = f"fileb://{sample_images / 't1.jpg'}"
    indexed = run_command(
        [*aws, "index-faces", "--collection-id", "cli-1", "--image-bytes", image,
         "--external-image-id", "t1", "--endpoint-url", url, "--query", "length(FaceRecords)"],
        env,
    )  # fmt: skip
    assert indexed.status == 0 and indexed.stdout.strip() == "6", indexed
    return url, data_dir


def _three_ways(
    facepipe: Runner, aws: Runner, store: tuple[str, Path], *args: str, status: int = 0
) -> Result:
    """aws remote, facepipe remote and facepipe local exit with ``status`` and print the same stdout
    and stderr (a success prints a result and no error; a failure prints an error and no result).
    Returns the AWS CLI's Result for the caller to check what was printed."""
    url, data_dir = store
    theirs = aws(*args, "--endpoint-url", url)
    assert theirs.status == status, (args, theirs)
    if status == 0:
        assert theirs.stdout.strip() and theirs.stderr == "", (args, theirs)
    else:
        assert theirs.stdout == "" and theirs.stderr.strip(), (args, theirs)
    remote = facepipe(*args, "--endpoint-url", url)
    local = facepipe(*args, "--data-dir", str(data_dir))
    assert remote == theirs, args
    assert local == theirs, args
    return theirs


@pytest.mark.parametrize("output", FORMATS)
def test_list_collections_formats(
    output: str, facepipe: Runner, aws: Runner, populated: tuple[str, Path]
) -> None:
    listed = _three_ways(facepipe, aws, populated, "list-collections", "--output", output)
    assert all(f"cli-{number}" in listed.stdout for number in range(3)), listed.stdout


@pytest.mark.parametrize("output", FORMATS)
def test_list_faces_formats_with_pagination(
    output: str, facepipe: Runner, aws: Runner, populated: tuple[str, Path]
) -> None:
    listed = _three_ways(
        facepipe,
        aws,
        populated,
        "list-faces",
        "--collection-id",
        "cli-1",
        "--page-size",
        "4",
        "--output",
        output,
    )
    assert listed.stdout.count("t1") == 6, listed.stdout  # every face of the 6-face photo, over 2 pages


def test_table_in_colour(facepipe: Runner, aws: Runner, populated: tuple[str, Path]) -> None:
    table = _three_ways(facepipe, aws, populated, "list-collections", "--output", "table", "--color", "on")
    assert "\x1b[" in table.stdout and "cli-2" in table.stdout


def test_describe_collection_with_timestamp(
    facepipe: Runner, aws: Runner, populated: tuple[str, Path]
) -> None:
    described = _three_ways(facepipe, aws, populated, "describe-collection", "--collection-id", "cli-1")
    fields = json.loads(described.stdout)
    assert fields["FaceCount"] == 6 and fields["CollectionARN"].endswith("collection/cli-1")
    assert abs(fields["CreationTimestamp"] - time.time()) < 3600  # AWS CLI v1: seconds since the epoch


def test_query(facepipe: Runner, aws: Runner, populated: tuple[str, Path]) -> None:
    matching = _three_ways(
        facepipe,
        aws,
        populated,
        "list-collections",
        "--query",
        "CollectionIds[?contains(@, '1')]",
        "--output",
        "text",
    )
    assert matching.stdout.split() == ["cli-1"]
    table = _three_ways(
        facepipe,
        aws,
        populated,
        "list-faces",
        "--collection-id",
        "cli-1",
        "--query",
        "sort_by(Faces, &BoundingBox.Left)[].[FaceId, ExternalImageId]",
        "--output",
        "table",
    )
    assert table.stdout.count("t1") == 6, table.stdout


def test_search_faces(facepipe: Runner, aws: Runner, populated: tuple[str, Path]) -> None:
    url, _ = populated
    face_ids = facepipe(
        "list-faces",
        "--collection-id",
        "cli-1",
        "--query",
        "Faces[].FaceId",
        "--output",
        "text",
        "--endpoint-url",
        url,
    )
    assert face_ids.status == 0, face_ids.stderr
    ids = face_ids.stdout.split()
    assert len(ids) == 6
    searched = _three_ways(
        facepipe,
        aws,
        populated,
        "search-faces",
        "--collection-id",
        "cli-1",
        "--face-id",
        ids[0],
        "--face-match-threshold",
        "0",
    )
    found = json.loads(searched.stdout)
    assert found["SearchedFaceId"] == ids[0]
    assert sorted(m["Face"]["FaceId"] for m in found["FaceMatches"]) == sorted(ids[1:])


def test_service_error_text_and_status(facepipe: Runner, aws: Runner, populated: tuple[str, Path]) -> None:
    failed = _three_ways(
        facepipe, aws, populated, "describe-collection", "--collection-id", "nope", status=255
    )
    assert "(ResourceNotFoundException)" in failed.stderr and "nope" in failed.stderr


def test_validation_error_text_and_status(facepipe: Runner, aws: Runner, populated: tuple[str, Path]) -> None:
    failed = _three_ways(
        facepipe,
        aws,
        populated,
        "associate-faces",
        "--collection-id",
        "cli-0",
        "--user-id",
        "u",
        "--face-ids",
        "not-a-face-id",
        status=255,
    )
    assert "(InvalidParameterException)" in failed.stderr


def test_real_aws_executable_and_facepipe_executable_agree(populated: tuple[str, Path]) -> None:
    """The installed-command view: separate processes, as the user types them."""
    url, _ = populated
    env = aws_env(AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s")
    args = ["list-collections", "--endpoint-url", url, "--output", "table"]
    theirs = run_command([*AWS_CLI, "rekognition", *args], env)
    ours = run_command([sys.executable, "-m", "pipeline.cli.main", *args], env)
    assert ours == theirs
    assert ours.status == 0 and ours.stderr == ""
    assert "cli-2" in ours.stdout
