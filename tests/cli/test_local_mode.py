"""Local mode: `facepipe <operation>` without --endpoint-url runs on the local store, no server.

Real models, real store: the sample group photo t1.jpg has six faces.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import Runner


def _json(text: str) -> dict:
    value = json.loads(text)
    assert isinstance(value, dict)
    return value


def test_create_list_describe_in_the_default_store(facepipe: Runner, data_dir: Path) -> None:
    created = facepipe("create-collection", "--collection-id", "family")
    assert created.status == 0, created.stderr
    assert _json(created.stdout)["StatusCode"] == 200
    listed = facepipe("list-collections", "--query", "CollectionIds", "--output", "text")
    assert listed.status == 0 and listed.stdout.split() == ["family"]
    described = _json(facepipe("describe-collection", "--collection-id", "family").stdout)
    assert described["FaceCount"] == 0 and described["UserCount"] == 0
    assert described["CollectionARN"].endswith("collection/family")
    assert any(data_dir.iterdir()), "the store lives under FACEPIPE_HOME"


def test_data_dir_option_selects_the_store(facepipe: Runner, data_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-store"
    assert facepipe("--data-dir", str(other), "create-collection", "--collection-id", "elsewhere").status == 0
    in_other = facepipe(
        "list-collections", f"--data-dir={other}", "--query", "CollectionIds", "--output", "text"
    )
    in_default = facepipe("list-collections", "--query", "CollectionIds", "--output", "text")
    assert in_other.stdout.split() == ["elsewhere"]
    assert in_default.stdout.split() == []


def test_service_errors_print_like_the_aws_cli(facepipe: Runner, data_dir: Path) -> None:
    missing = facepipe("describe-collection", "--collection-id", "nope")
    assert missing.status == 255 and missing.stdout == ""
    assert missing.stderr.startswith(
        "\nAn error occurred (ResourceNotFoundException) when calling the DescribeCollection operation: "
    )
    assert facepipe("create-collection", "--collection-id", "twice").status == 0
    again = facepipe("create-collection", "--collection-id", "twice")
    assert again.status == 255 and "(ResourceAlreadyExistsException)" in again.stderr
    invalid = facepipe("create-collection", "--collection-id", "no spaces allowed")
    assert invalid.status == 255 and "(InvalidParameterException)" in invalid.stderr
    assert "Traceback" not in missing.stderr + again.stderr + invalid.stderr


def test_no_credentials_or_region_needed(
    facepipe: Runner, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    result = facepipe("list-collections")
    assert result.status == 0, result.stderr
    assert _json(result.stdout)["CollectionIds"] == []


@pytest.fixture()
def indexed_group(facepipe: Runner, data_dir: Path, sample_images: Path) -> list[str]:
    """FaceIds of the six faces of t1.jpg, indexed into collection 'group' through the CLI."""
    assert facepipe("create-collection", "--collection-id", "group").status == 0
    result = facepipe(
        "index-faces",
        "--collection-id",
        "group",
        "--image-bytes",
        f"fileb://{sample_images / 't1.jpg'}",
        "--external-image-id",
        "t1.jpg",
    )
    assert result.status == 0, result.stderr
    records = _json(result.stdout)["FaceRecords"]
    assert len(records) == 6
    return [record["Face"]["FaceId"] for record in records]


def test_users_and_associations_with_list_and_file_arguments(
    facepipe: Runner, indexed_group: list[str], tmp_path: Path
) -> None:
    assert facepipe("create-user", "--collection-id", "group", "--user-id", "someone").status == 0
    associated = facepipe(
        "associate-faces",
        "--collection-id",
        "group",
        "--user-id",
        "someone",
        "--face-ids",
        indexed_group[0],
        "--client-request-token",
        "token-1",
    )
    assert associated.status == 0, associated.stderr
    body = _json(associated.stdout)
    assert [face["FaceId"] for face in body["AssociatedFaces"]] == [indexed_group[0]]
    assert body["UserStatus"] == "ACTIVE"

    request = tmp_path / "search.json"
    request.write_text(json.dumps({"CollectionId": "group", "FaceId": indexed_group[0]}))
    searched = facepipe(
        "search-users", "--cli-input-json", f"file://{request}", "--query", "UserMatches[].User.UserId"
    )
    assert searched.status == 0, searched.stderr
    assert json.loads(searched.stdout) == ["someone"]


def test_pagination_is_the_aws_clis(facepipe: Runner, indexed_group: list[str]) -> None:
    everything = _json(facepipe("list-faces", "--collection-id", "group", "--page-size", "2").stdout)
    assert sorted(face["FaceId"] for face in everything["Faces"]) == sorted(indexed_group)
    assert "NextToken" not in everything

    first = _json(facepipe("list-faces", "--collection-id", "group", "--max-items", "4").stdout)
    assert len(first["Faces"]) == 4 and first["NextToken"]
    rest = _json(
        facepipe(
            "list-faces",
            "--collection-id",
            "group",
            "--max-items",
            "4",
            "--starting-token",
            first["NextToken"],
        ).stdout
    )
    assert {face["FaceId"] for face in first["Faces"] + rest["Faces"]} == set(indexed_group)

    one_page = _json(
        facepipe("list-faces", "--collection-id", "group", "--no-paginate", "--max-results", "2").stdout
    )
    assert len(one_page["Faces"]) == 2 and one_page["NextToken"]


def test_query_and_text_output(facepipe: Runner, indexed_group: list[str]) -> None:
    result = facepipe(
        "list-faces", "--collection-id", "group", "--query", "Faces[].FaceId", "--output", "text"
    )
    assert result.status == 0
    assert sorted(result.stdout.split()) == sorted(indexed_group)
