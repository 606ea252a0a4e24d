"""Side by side with the real AWS CLI against `facepipe serve` (started here on a free port).

The same request through `aws rekognition ... --endpoint-url`, `facepipe ... --endpoint-url` and
`facepipe ...` in local mode on the server's own store must print the same bytes and exit with
the same status.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO_ROOT
from tests.support.cli import Runner, running_server

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
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    aws = [sys.executable, "-m", "awscli", "rekognition"]
    for number in range(3):
        subprocess.run(
            [*aws, "create-collection", "--collection-id", f"cli-{number}", "--endpoint-url", url],
            env=env,
            check=True,
            capture_output=True,
        )
    image = f"fileb://{sample_images / 't1.jpg'}"
    subprocess.run(
        [
            *aws,
            "index-faces",
            "--collection-id",
            "cli-1",
            "--image-bytes",
            image,
            "--external-image-id",
            "t1",
            "--endpoint-url",
            url,
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    return url, data_dir


def _three_ways(facepipe: Runner, aws: Runner, store: tuple[str, Path], *args: str) -> None:
    """aws remote, facepipe remote and facepipe local give the same status, stdout and stderr."""
    url, data_dir = store
    theirs = aws(*args, "--endpoint-url", url)
    remote = facepipe(*args, "--endpoint-url", url)
    local = facepipe(*args, "--data-dir", str(data_dir))
    assert remote == theirs, args
    assert local == theirs, args


@pytest.mark.parametrize("output", FORMATS)
def test_list_collections_formats(
    output: str, facepipe: Runner, aws: Runner, populated: tuple[str, Path]
) -> None:
    _three_ways(facepipe, aws, populated, "list-collections", "--output", output)


@pytest.mark.parametrize("output", FORMATS)
def test_list_faces_formats_with_pagination(
    output: str, facepipe: Runner, aws: Runner, populated: tuple[str, Path]
) -> None:
    _three_ways(
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


def test_table_in_colour(facepipe: Runner, aws: Runner, populated: tuple[str, Path]) -> None:
    _three_ways(facepipe, aws, populated, "list-collections", "--output", "table", "--color", "on")


def test_describe_collection_with_timestamp(
    facepipe: Runner, aws: Runner, populated: tuple[str, Path]
) -> None:
    _three_ways(facepipe, aws, populated, "describe-collection", "--collection-id", "cli-1")


def test_query(facepipe: Runner, aws: Runner, populated: tuple[str, Path]) -> None:
    _three_ways(
        facepipe,
        aws,
        populated,
        "list-collections",
        "--query",
        "CollectionIds[?contains(@, '1')]",
        "--output",
        "text",
    )
    _three_ways(
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
    first = face_ids.stdout.split()[0]
    _three_ways(
        facepipe,
        aws,
        populated,
        "search-faces",
        "--collection-id",
        "cli-1",
        "--face-id",
        first,
        "--face-match-threshold",
        "0",
    )


def test_service_error_text_and_status(facepipe: Runner, aws: Runner, populated: tuple[str, Path]) -> None:
    _three_ways(facepipe, aws, populated, "describe-collection", "--collection-id", "nope")
    url, _ = populated
    result = aws("describe-collection", "--collection-id", "nope", "--endpoint-url", url)
    assert result.status == 255 and "(ResourceNotFoundException)" in result.stderr


def test_validation_error_text_and_status(facepipe: Runner, aws: Runner, populated: tuple[str, Path]) -> None:
    _three_ways(
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
    )


def test_real_aws_executable_and_facepipe_executable_agree(populated: tuple[str, Path]) -> None:
    """The installed-command view: separate processes, as the user types them."""
    url, _ = populated
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
    }
    args = ["list-collections", "--endpoint-url", url, "--output", "table"]
    theirs = subprocess.run(
        [sys.executable, "-m", "awscli", "rekognition", *args], capture_output=True, text=True, env=env
    )
    ours = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    assert (
        (ours.returncode, ours.stdout, ours.stderr)
        == (theirs.returncode, theirs.stdout, theirs.stderr)
        == (0, theirs.stdout, "")
    )
    assert "cli-2" in ours.stdout
