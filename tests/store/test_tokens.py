"""Forged pagination tokens whose key no stored name can hold (a lone surrogate, NUL) are refused
with InvalidPaginationTokenException, not a traceback (tests/postgres checks PostgreSQL too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.errors import InvalidPaginationTokenException
from pipeline.service import FacePipe
from pipeline.service.pagination import encode_token
from tests.support.synthetic_faces import LinearEngine

UNSTORABLE_KEYS = ["\ud800", "a\x00b"]
"""A lone surrogate (no UTF-8 form) and NUL (PostgreSQL text cannot hold it)."""


def assert_forged_keys_are_refused(fp: FacePipe) -> None:
    """ListCollections and ListUsers refuse a well-signed token carrying each UNSTORABLE_KEYS key."""
    fp.call("CreateCollection", {"CollectionId": "c"})
    with fp.store.read() as tx:
        scope = tx.collection("c").id
    for key in UNSTORABLE_KEYS:
        with pytest.raises(InvalidPaginationTokenException):
            fp.call("ListCollections", {"NextToken": encode_token("ListCollections", 0, key)})
        with pytest.raises(InvalidPaginationTokenException):
            fp.call("ListUsers", {"CollectionId": "c", "NextToken": encode_token("ListUsers", scope, key)})


def test_forged_keys_are_refused_on_sqlite(tmp_path: Path) -> None:
    fp = FacePipe(Settings(data_dir=tmp_path, cache_dir=tmp_path / "cache"), engine=LinearEngine())
    try:
        assert_forged_keys_are_refused(fp)
    finally:
        fp.close()
