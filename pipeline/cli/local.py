"""Local mode: botocore requests answered in-process by the service, no server, no network.

:class:`LocalTransport` is a ``before-send.rekognition`` event handler. It hands the prepared
request's ``X-Amz-Target`` header and JSON body to the same protocol handler the HTTP server
uses (:func:`pipeline.protocol.handler.handle_request`) and returns its answer as the HTTP
response botocore would have received, so parsing, errors, retries and output formatting are
exactly those of a remote call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse

if TYPE_CHECKING:
    from pipeline.service import FacePipe


class _Body:
    """The raw-response object AWSResponse reads its content from (``stream()``)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        """Yield the whole body once."""
        yield self._data


class LocalTransport:
    """Answers botocore Rekognition requests from the local store in ``data_dir``.

    data_dir: the store's directory; None uses Settings' default ($FACEPIPE_HOME or the platform
    data directory). embedded_store: always the SQLite store in data_dir, even when
    $FACEPIPE_STORE names a shared database (an application's tests must not write to it). The
    service is opened on the first request and kept until :meth:`close`.
    """

    def __init__(self, data_dir: Path | None, embedded_store: bool = False) -> None:
        self._data_dir = data_dir
        self._embedded_store = embedded_store
        self._facepipe: FacePipe | None = None

    def facepipe(self) -> FacePipe:
        """The service on the local store, opened on first use."""
        if self._facepipe is None:
            from pipeline.config import Settings
            from pipeline.service import FacePipe

            settings = Settings.from_env(data_dir=self._data_dir)
            if self._embedded_store:
                settings = dataclasses.replace(settings, store=None)  # from_env ignores None overrides
            self._facepipe = FacePipe(settings)
        return self._facepipe

    def __call__(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        """Handle one prepared request; the returned response replaces the HTTP round trip."""
        from pipeline.protocol.handler import handle_request

        target = _text(request.headers.get("X-Amz-Target", ""))
        answer = handle_request(self.facepipe(), target, _bytes(request.body))
        return AWSResponse(request.url, answer.status, dict(answer.headers), _Body(answer.body))

    def close(self) -> None:
        """Close the service if it was opened."""
        if self._facepipe is not None:
            self._facepipe.close()
            self._facepipe = None


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _bytes(value: object) -> bytes:
    """A request or response body as bytes (botocore may hold str, bytes or a file object)."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    read = getattr(value, "read", None)
    if callable(read):
        data = read()
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)
    raise TypeError(f"unsupported body type {type(value).__name__}")
