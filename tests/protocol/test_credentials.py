"""Where the server's accepted credentials come from, and clear errors when a source is broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.protocol.credentials import CredentialsError, load_credentials, parse_credentials_env


def test_all_sources_are_combined(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    path.write_text(
        "[default]\naws_access_key_id = AKIDA\naws_secret_access_key = secret-a\n"
        "[ops]\naws_access_key_id=AKIDB\naws_secret_access_key=secret/b+c=\nregion = eu-west-1\n"
        "[other]\nregion = us-east-1\n"
    )
    env = {
        "FACEPIPE_CREDENTIALS": "AKIDC:secret-c, AKIDD:secret:d",
        "AWS_ACCESS_KEY_ID": "AKIDE",
        "AWS_SECRET_ACCESS_KEY": "secret-e",
    }
    assert load_credentials([path], env) == {
        "AKIDA": "secret-a",
        "AKIDB": "secret/b+c=",
        "AKIDC": "secret-c",
        "AKIDD": "secret:d",
        "AKIDE": "secret-e",
    }


def test_nothing_configured_is_empty() -> None:
    assert load_credentials([], {"AWS_ACCESS_KEY_ID": "only-the-id"}) == {}


@pytest.mark.parametrize("value", ["AKID", "AKID:", ":secret", "A:b,broken"])
def test_malformed_env(value: str) -> None:
    with pytest.raises(CredentialsError, match="FACEPIPE_CREDENTIALS must be"):
        parse_credentials_env(value)


def test_broken_files(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="cannot read credentials file"):
        load_credentials([tmp_path / "missing"], {})
    half = tmp_path / "half"
    half.write_text("[default]\naws_access_key_id = AKIDA\n")
    with pytest.raises(CredentialsError, match=r"section \[default\]: needs both"):
        load_credentials([half], {})
    garbage = tmp_path / "garbage"
    garbage.write_text("aws_access_key_id = AKIDA\n")
    with pytest.raises(CredentialsError, match="not an INI file"):
        load_credentials([garbage], {})
