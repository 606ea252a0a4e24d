"""Where the server's accepted credentials (access key id -> secret) come from.

All sources are combined:

- credentials files (``--credentials-file``, or ``credentials_file`` in the config file), in the
  AWS shared-credentials format: every section with ``aws_access_key_id`` and
  ``aws_secret_access_key`` adds one key pair, so the operator can hand clients the same file;
- ``FACEPIPE_CREDENTIALS="AKID1:SECRET1,AKID2:SECRET2"`` in the server's environment;
- ``AWS_ACCESS_KEY_ID`` with ``AWS_SECRET_ACCESS_KEY`` in the server's environment.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Iterable, Mapping
from pathlib import Path


class CredentialsError(ValueError):
    """A credentials source exists but cannot be read; the message says which and why."""


def parse_credentials_env(value: str) -> dict[str, str]:
    """``"AKID:SECRET,AKID2:SECRET2"`` -> {access key id: secret}; raises CredentialsError if malformed."""
    pairs: dict[str, str] = {}
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        key_id, sep, secret = item.partition(":")
        if not sep or not key_id.strip() or not secret.strip():
            raise CredentialsError(
                "FACEPIPE_CREDENTIALS must be 'ACCESS_KEY_ID:SECRET[,ACCESS_KEY_ID:SECRET...]'."
            )
        pairs[key_id.strip()] = secret.strip()
    return pairs


def read_ini_file(path: Path, kind: str) -> configparser.ConfigParser:
    """Parse an INI file; ``kind`` names it in errors ("config file", "credentials file").

    Raises CredentialsError (a ValueError) saying what is wrong when it cannot be read or parsed.
    """
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise CredentialsError(f"cannot read {kind} {path}: {exc.strerror or exc}") from None
    except configparser.Error as exc:
        raise CredentialsError(f"{kind} {path} is not an INI file: {exc}") from None
    return parser


def read_credentials_file(path: Path) -> dict[str, str]:
    """Key pairs from an AWS shared-credentials style INI file (one per section)."""
    parser = read_ini_file(path, "credentials file")
    pairs: dict[str, str] = {}
    for name in parser.sections():
        section = parser[name]
        key_id = section.get("aws_access_key_id", "").strip()
        secret = section.get("aws_secret_access_key", "").strip()
        if key_id and secret:
            pairs[key_id] = secret
        elif key_id or secret:
            raise CredentialsError(
                f"credentials file {path}, section [{name}]: needs both aws_access_key_id and "
                "aws_secret_access_key"
            )
    return pairs


def load_credentials(files: Iterable[Path], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """All configured key pairs: the files, then FACEPIPE_CREDENTIALS, then AWS_* of ``environ``."""
    env = os.environ if environ is None else environ
    pairs: dict[str, str] = {}
    for path in files:
        pairs.update(read_credentials_file(path))
    if env.get("FACEPIPE_CREDENTIALS"):
        pairs.update(parse_credentials_env(env["FACEPIPE_CREDENTIALS"]))
    key_id = env.get("AWS_ACCESS_KEY_ID", "").strip()
    secret = env.get("AWS_SECRET_ACCESS_KEY", "").strip()
    if key_id and secret:
        pairs[key_id] = secret
    return pairs
