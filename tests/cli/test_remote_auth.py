"""Remote mode against a server that verifies SigV4: credentials, profiles and refusals as in the AWS CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import Runner, running_server

KEY_ID, SECRET = "AKIDFACEPIPETEST", "facepipe-test-secret"


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(URL, a shared-credentials file with profile 'tester') of a `facepipe serve` accepting KEY_ID/SECRET."""
    data_dir = tmp_path_factory.mktemp("signed-store")
    credentials = data_dir / "credentials"
    credentials.write_text(f"[tester]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n")
    with running_server(data_dir, extra=(), env={"FACEPIPE_CREDENTIALS": f"{KEY_ID}:{SECRET}"}) as url:
        yield url, credentials


def test_signed_requests_from_environment_credentials(
    facepipe: Runner, aws: Runner, signed_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = signed_server
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    ours = facepipe("list-collections", "--endpoint-url", url)
    assert ours.status == 0, ours.stderr
    assert json.loads(ours.stdout)["CollectionIds"] == [] and ours.stderr == ""
    assert ours == aws("list-collections", "--endpoint-url", url)


def test_signed_requests_from_a_profile(
    facepipe: Runner, aws: Runner, signed_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, credentials = signed_server
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    ours = facepipe("list-collections", "--endpoint-url", url, "--profile", "tester")
    assert ours.status == 0, ours.stderr
    assert json.loads(ours.stdout)["CollectionIds"] == [] and ours.stderr == ""
    assert ours == aws("list-collections", "--endpoint-url", url, "--profile", "tester")


@pytest.mark.parametrize("extra", [[], ["--no-sign-request"]], ids=["wrong-secret", "unsigned"])
def test_refusals_print_like_the_aws_cli(
    extra: list[str],
    facepipe: Runner,
    aws: Runner,
    signed_server: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, _ = signed_server
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    ours = facepipe("list-collections", "--endpoint-url", url, *extra)
    theirs = aws("list-collections", "--endpoint-url", url, *extra)
    assert ours.status == theirs.status == 255
    assert ours.stderr == theirs.stderr and "An error occurred (" in ours.stderr


def test_missing_profile_is_the_aws_clis_error(
    facepipe: Runner, aws: Runner, signed_server: tuple[str, Path]
) -> None:
    url, _ = signed_server
    ours = facepipe("list-collections", "--endpoint-url", url, "--profile", "nobody")
    theirs = aws("list-collections", "--endpoint-url", url, "--profile", "nobody")
    assert ours.status == theirs.status == 255
    assert ours.stderr == theirs.stderr and "nobody" in ours.stderr


def test_region_defaults_to_us_east_1(
    facepipe: Runner, aws: Runner, signed_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the AWS CLI stops for want of a region, facepipe signs for us-east-1."""
    url, _ = signed_server
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    theirs = aws("list-collections", "--endpoint-url", url)
    assert theirs.status == 255 and "region" in theirs.stderr
    ours = facepipe("list-collections", "--endpoint-url", url, "--debug")
    assert ours.status == 0, ours.stderr[-2000:]
    assert "/us-east-1/rekognition/aws4_request" in ours.stderr
