"""Pagination of the List operations: one helper, tokens bound to the request that issued them.

A NextToken names the operation, the scope (the collection's internal id; 0 for ListCollections),
a digest of the request's filters (ListFaces' UserId and FaceIds) and the key of the last item
returned. It is opaque to clients (base64url JSON plus a check) and bounded: the filters are
hashed, so a ListFaces token for 4,096 FaceIds is as long as one for a single FaceId. A request
without filters gets a token without the digest, byte for byte what earlier releases issued (a
token in a client's hands across an upgrade keeps working; a ListCollections token after a
CollectionId of up to 159 characters stays within PaginationToken's 255). A token presented to
another operation, another collection or a request with other filters, or one that was altered,
is InvalidPaginationTokenException. MaxResults may change from page to page.

    pages = Paginator("ListFaces", coll.id, int, {"UserId": user_id, "FaceIds": face_ids})
    after = pages.resume(next_token)            # None for the first page, else the last key sent
    rows = tx.list_faces(coll, after or 0, limit + 1, ...)
    page, token = pages.page(rows, limit, key=lambda row: row.label)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from pipeline.errors import InvalidPaginationTokenException
from pipeline.service.validation import is_valid_unicode, show_value

T = TypeVar("T")
K = TypeVar("K", str, int)

FILTER_DIGEST_CHARS = 12
"""Hex characters of the filters' SHA-256 kept in a token (48 bits: binds, keeps tokens short)."""

CHECK_CHARS = 8
"""Hex characters of the SHA-256 check appended to a token (catches altered or truncated tokens)."""

MAX_INT_KEY = 2**63
"""Integer keys (face labels) are int64: 0 <= key < MAX_INT_KEY."""


def filter_digest(filters: Mapping[str, Any] | None) -> str:
    """The digest of a request's filters as a token carries it (None values and no filters are
    the same; a list filter is a set: its order and repeats do not matter)."""
    canonical = {
        name: sorted(set(value)) if isinstance(value, list | tuple) else value
        for name, value in sorted((filters or {}).items())
        if value is not None
    }
    raw = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(raw).hexdigest()[:FILTER_DIGEST_CHARS]


NO_FILTERS_DIGEST = filter_digest(None)
"""The digest of a request without filters: its tokens leave the digest out."""


class Paginator(Generic[K]):
    """Pages of one List request: ``operation`` (its botocore name), ``scope`` (the collection's
    internal id, 0 when the list has no collection), ``key_type`` (int for face labels, str for
    names) and the request's ``filters`` (member name -> value; see :func:`filter_digest`)."""

    def __init__(
        self, operation: str, scope: int, key_type: type[K], filters: Mapping[str, Any] | None = None
    ) -> None:
        self.operation = operation
        self.scope = scope
        self.key_type: type[K] = key_type
        self.filter_names = sorted(filters or {})
        self.digest = filter_digest(filters)

    def token(self, key: K) -> str:
        """The NextToken that resumes this request after ``key``."""
        fields: list[Any] = [self.operation, self.scope, key]
        if self.digest != NO_FILTERS_DIGEST:
            fields.insert(2, self.digest)
        raw = json.dumps(fields, separators=(",", ":")).encode()
        check = hashlib.sha256(raw).hexdigest()[:CHECK_CHARS]
        return base64.urlsafe_b64encode(raw).decode().rstrip("=") + "." + check

    def resume(self, token: str | None) -> K | None:
        """The key after which the page starts: None without a token, else the key the token
        carries; InvalidPaginationTokenException for a token this request did not issue."""
        if not token:
            return None
        value = self._decode(token)
        operation, scope, digest, key = value
        if operation != self.operation or scope != self.scope:
            raise InvalidPaginationTokenException(
                f"Invalid pagination token: it was not issued by {self.operation} for this"
                f" {'collection' if self.scope else 'account'}"
            )
        if digest != self.digest:
            names = " and ".join(self.filter_names) or "filters"
            raise InvalidPaginationTokenException(
                f"Invalid pagination token: it was issued for a {self.operation} request with other"
                f" {names}; send the NextToken with the same {names} as the request that returned it"
            )
        if not self._is_key(key):
            raise self._invalid(token)
        checked: K = key
        return checked

    def page(self, rows: Sequence[T], limit: int, key: Callable[[T], K]) -> tuple[list[T], str | None]:
        """The first ``limit`` of ``rows`` (fetched as limit + 1, in key order) and the NextToken
        after them, None when ``rows`` held no more."""
        page = list(rows[:limit])
        return page, self.token(key(page[-1])) if len(rows) > limit and page else None

    def _decode(self, token: str) -> list[Any]:
        body, _, check = token.partition(".")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            value = json.loads(raw)
        except (binascii.Error, ValueError):
            raise self._invalid(token) from None
        if hashlib.sha256(raw).hexdigest()[:CHECK_CHARS] != check or not isinstance(value, list):
            raise self._invalid(token)
        if len(value) == 3:  # a request without filters
            value.insert(2, NO_FILTERS_DIGEST)
        if len(value) != 4 or not isinstance(value[2], str):
            raise self._invalid(token)
        return value

    def _is_key(self, key: Any) -> bool:
        if self.key_type is int:
            return isinstance(key, int) and not isinstance(key, bool) and 0 <= key < MAX_INT_KEY
        # forged when not a str: no stored name holds NUL or a lone surrogate
        return isinstance(key, str) and "\x00" not in key and is_valid_unicode(key)

    @staticmethod
    def _invalid(token: str) -> InvalidPaginationTokenException:
        return InvalidPaginationTokenException(f"Invalid pagination token: {show_value(token[:64])}")


def encode_token(operation: str, scope: int, key: str | int, filters: Mapping[str, Any] | None = None) -> str:
    """The NextToken a ``operation`` request on ``scope`` with ``filters`` returns after ``key``
    (tests forge tokens with it)."""
    paginator: Paginator[Any] = Paginator(operation, scope, type(key), filters)
    return paginator.token(key)
