"""The ASGI application: Rekognition JSON 1.1 on ``POST /``, a health check on ``GET /health``,
and with ``metrics`` on, Prometheus metrics on ``GET /metrics`` (:mod:`pipeline.protocol.metrics`).

Requests are checked in order of cost: the Host header (``allowed_hosts``), the SigV4 headers
(:meth:`SigV4Verifier.check_headers`), the declared size, all before a byte of the body is read;
a request refused there is answered at once and its connection closed. The body must then arrive
within its deadline (:meth:`ConnectionLimits.body_deadline_s`), the signature is checked, and
:func:`pipeline.protocol.handler.handle_request` answers on a thread pool (the service's calls
block): image operations on one pool, metadata operations (no image) on another, so cheap calls
never queue behind image work. Each request is logged as one JSON line on the
``pipeline.protocol.access`` logger, and counted in the metrics at the same place.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime, timezone

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.errors import (
    AccessDeniedException,
    InternalServerError,
    RekognitionError,
    RequestEntityTooLargeException,
    RequestTimeoutException,
    SerializationException,
    UnknownOperationException,
)
from pipeline.protocol.connections import ConnectionLimits
from pipeline.protocol.handler import (
    ProtocolResponse,
    Service,
    error_response,
    handle_request,
    new_request_id,
    operation_from_target,
)
from pipeline.protocol.metrics import ServerMetrics
from pipeline.protocol.sigv4 import ReplayedSignatureError, SignatureClaim, SignedRequest, SigV4Verifier
from pipeline.service import rekognition_model

access_log = logging.getLogger("pipeline.protocol.access")
logger = logging.getLogger("pipeline.protocol")

DEFAULT_THREADS = 8
"""Image requests answered at once (the service's blocking image calls run on this many threads)."""
DEFAULT_METADATA_THREADS = 4
"""Threads for the operations without an image (List*, Describe*, Create/Delete*, SearchFaces...)."""
IMAGE_THREAD_NICENESS = 10
"""How much lower the image threads' CPU priority is (Linux nice increment): when image work
saturates the cores, the event loop and the metadata threads still get the CPU at once."""
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
"""Host names a --no-auth server accepts by default (DNS rebinding cannot reach it)."""


def image_operations() -> frozenset[str]:
    """Operations whose input carries an image (IndexFaces, DetectFaces, CompareFaces, *ByImage...)."""
    model = rekognition_model()
    names = set()
    for name in model.operation_names:
        shape = model.operation_model(name).input_shape
        if shape is not None and any(m.name == "Image" for m in shape.members.values()):
            names.add(name)
    return frozenset(names)


def lower_thread_priority(increment: int = IMAGE_THREAD_NICENESS) -> None:
    """Make the calling thread yield the CPU to normal-priority threads (Linux; elsewhere a no-op)."""
    if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        try:
            current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, current + increment))
        except OSError:  # not allowed here: run at the normal priority
            pass


def host_name(host_header: str) -> str:
    """The host of a Host header without its port, lower case (``[::1]:8080`` -> ``::1``)."""
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value  # a bare IPv6 address, or a name without a port


def host_allowed(host_header: str | None, allowed_hosts: Sequence[str]) -> bool:
    """Whether a Host header matches ``allowed_hosts`` (like Django's ALLOWED_HOSTS; port ignored).

    An entry matches that host exactly (case-insensitive); ``.example.com`` matches example.com
    and its subdomains; ``*`` matches any host. A request without a Host header matches nothing.
    """
    if not host_header:
        return False
    host = host_name(host_header)
    for entry in allowed_hosts:
        pattern = host_name(entry) if not entry.startswith(".") else entry.lower()
        if pattern == "*" or host == pattern:
            return True
        if pattern.startswith(".") and (host == pattern[1:] or host.endswith(pattern)):
            return True
    return False


def _host_refusal(request: Request, allowed: Sequence[str] | None) -> AccessDeniedException | None:
    """The error for a request whose Host header ``allowed`` (None: any) does not accept, else None."""
    if allowed is None or host_allowed(request.headers.get("host"), allowed):
        return None
    shown = repr((request.headers.get("host") or "")[:100])
    return AccessDeniedException(
        f"Host {shown} is not allowed: this server answers only requests for "
        f"{', '.join(allowed)} (--allowed-hosts)."
    )


def default_max_body_bytes(max_image_bytes: int) -> int:
    """Body cap that fits two images of ``max_image_bytes`` as base64 (CompareFaces) plus 1 MiB."""
    return 2 * (4 * ((max_image_bytes + 2) // 3)) + (1 << 20)


class _BodyTooLarge(Exception):
    pass


def _declared_length(request: Request, max_body_bytes: int) -> int | None:
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    try:
        length = int(declared)
    except ValueError:
        raise SerializationException("Content-Length is not a number.") from None
    if length > max_body_bytes:
        raise _BodyTooLarge()
    return length


def _closing_if_body_follows(request: Request, headers: dict[str, str]) -> dict[str, str]:
    """``headers`` plus ``Connection: close`` when ``request`` declares a body that is not read
    (the server would otherwise read and discard all of it to keep the connection)."""
    declared = request.headers.get("content-length", "0").strip()
    if "transfer-encoding" in request.headers or declared not in ("", "0"):
        return {**headers, "Connection": "close"}
    return headers


async def _read_body(request: Request, max_body_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body_bytes:
            raise _BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def check_thread_counts(threads: int, metadata_threads: int) -> None:
    """Raise ValueError unless ``threads`` (image threads) is at least 1 and ``metadata_threads``
    at least 0 (0: metadata operations share the image threads)."""
    if threads < 1:
        raise ValueError("--threads must be at least 1")
    if metadata_threads < 0:
        raise ValueError("--metadata-threads must be 0 (share the image threads) or more")


def create_app(
    fp: Service,
    verifier: SigV4Verifier | None,
    max_body_bytes: int,
    threads: int = DEFAULT_THREADS,
    on_shutdown: Callable[[], None] | None = None,
    metadata_threads: int = DEFAULT_METADATA_THREADS,
    limits: ConnectionLimits | None = None,
    allowed_hosts: Sequence[str] | None = None,
    metrics: bool = False,
) -> Starlette:
    """The server's ASGI app for one service instance.

    verifier: None turns authentication off; max_body_bytes: larger request bodies are refused
    with 413 RequestEntityTooLargeException; threads: concurrent image calls; metadata_threads:
    concurrent calls without an image, on their own pool (0: share the image pool); limits: the
    body deadline (ConnectionLimits.body_deadline_s); allowed_hosts: Host header values accepted
    (None: any, see :func:`host_allowed`); on_shutdown: run once the requests in flight have
    finished (e.g. closing the store); metrics: serve ``GET /metrics`` (Prometheus text format,
    unsigned, subject to ``allowed_hosts``; the store's figures come from ``fp.store`` when the
    service has one).
    """
    check_thread_counts(threads, metadata_threads)
    limits = limits or ConnectionLimits()
    image_pool = ThreadPoolExecutor(
        max_workers=threads,
        thread_name_prefix="facepipe-image",
        initializer=lower_thread_priority if metadata_threads else None,
    )
    metadata_pool = (
        ThreadPoolExecutor(max_workers=metadata_threads, thread_name_prefix="facepipe-metadata")
        if metadata_threads
        else image_pool
    )
    with_image = image_operations()
    allowed = tuple(allowed_hosts) if allowed_hosts is not None else None
    server_metrics = ServerMetrics(getattr(fp, "store", None)) if metrics else None

    async def rekognition(request: Request) -> Response:
        started = time.perf_counter()
        request_id = new_request_id()
        target = request.headers.get("x-amz-target")
        operation = operation_from_target(target)
        executor = image_pool if operation in with_image else metadata_pool
        loop = asyncio.get_running_loop()
        body = b""
        body_read = False
        access_key = None
        answer: ProtocolResponse
        try:
            claim: SignatureClaim | None = None
            refusal = _host_refusal(request, allowed)
            if refusal is not None:
                raise refusal
            if verifier is not None:
                # headers only, before the body is read: an unsigned client costs almost nothing
                claim = verifier.check_headers(
                    [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]]
                )
            length = _declared_length(request, max_body_bytes)
            deadline = limits.body_deadline_s(max_body_bytes if length is None else length)
            try:
                body = await asyncio.wait_for(_read_body(request, max_body_bytes), deadline)
            except asyncio.TimeoutError:
                raise RequestTimeoutException(
                    f"The request body did not arrive within {deadline:.0f} s "
                    f"({limits.body_timeout_s:g} s plus {limits.min_body_rate} bytes/s)."
                ) from None
            body_read = True
            if verifier is not None and claim is not None:
                signed = SignedRequest(
                    method=request.method,
                    path=request.scope.get("raw_path", b"/").decode("latin-1").split("?", 1)[0],
                    query=request.scope.get("query_string", b"").decode("latin-1"),
                    headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]],
                    body=body,
                )
                # hashing the body (up to the cap) off the event loop, like the service call
                verified = await loop.run_in_executor(executor, verifier.verify_signature, signed, claim)
                access_key = verified.access_key_id
        except ReplayedSignatureError as error:
            # answered after a second, so that the client's retry is signed anew (a new X-Amz-Date)
            await asyncio.sleep(error.retry_after_s)
            answer = error_response(error, request_id)
        except _BodyTooLarge:
            answer = error_response(
                RequestEntityTooLargeException(
                    f"Request body is larger than the server's limit of {max_body_bytes} bytes."
                ),
                request_id,
            )
        except ClientDisconnect:
            gone = SerializationException("The client closed the connection before sending the whole body.")
            answer = error_response(gone, request_id)
        except RekognitionError as error:
            answer = error_response(error, request_id)
        except Exception:
            logger.exception("internal error before answering %s (request id %s)", target, request_id)
            internal = InternalServerError(f"Internal server error (request id {request_id}).")
            answer = error_response(internal, request_id)
        else:
            answer = await loop.run_in_executor(executor, handle_request, fp, target, body, request_id)
        headers = answer.headers
        if not body_read:
            # the unread body is still on the connection: refuse and close at once
            headers = {**headers, "Connection": "close"}
        latency_s = time.perf_counter() - started
        error_code = answer.headers.get("x-amzn-ErrorType")
        if server_metrics is not None:
            server_metrics.record(operation, answer.status, error_code, latency_s)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                json.dumps(
                    {
                        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                        "request_id": request_id,
                        "operation": operation or (target or "")[:100],
                        "status": answer.status,
                        "error": error_code,
                        "latency_ms": round(latency_s * 1000, 2),
                        "bytes_in": len(body),
                        "bytes_out": len(answer.body),
                        "client": request.client.host if request.client else None,
                        "access_key_id": access_key,
                    }
                )
            )
        return Response(answer.body, status_code=answer.status, headers=headers)

    async def health(request: Request) -> Response:
        request_id = new_request_id()
        body = json.dumps({"status": "ok", "operations": len(fp.operations)}).encode()
        headers = {"Content-Type": "application/json", "x-amzn-RequestId": request_id}
        return Response(body, status_code=200, headers=_closing_if_body_follows(request, headers))

    async def prometheus_metrics(request: Request) -> Response:
        # no signature (scrapers do not sign) and no body read; the Host check as for the API
        assert server_metrics is not None
        request_id = new_request_id()
        refusal = _host_refusal(request, allowed)
        if refusal is not None:
            answer = error_response(refusal, request_id)
            headers = _closing_if_body_follows(request, answer.headers)
            return Response(answer.body, status_code=answer.status, headers=headers)
        body = await asyncio.get_running_loop().run_in_executor(metadata_pool, server_metrics.exposition)
        headers = {"Content-Type": CONTENT_TYPE_LATEST, "x-amzn-RequestId": request_id}
        return Response(body, status_code=200, headers=_closing_if_body_follows(request, headers))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            metadata_pool.shutdown(wait=True)
            image_pool.shutdown(wait=True)
            if on_shutdown is not None:
                on_shutdown()

    routes = [
        Route("/", rekognition, methods=["POST"]),
        Route("/health", health, methods=["GET", "HEAD"]),
    ]
    if server_metrics is not None:
        routes.append(Route("/metrics", prometheus_metrics, methods=["GET"]))
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _route_error},
    )


async def _route_error(request: Request, exc: Exception) -> Response:
    """404/405 for anything but ``POST /``, ``GET /health`` and (metrics on) ``GET /metrics``, in the
    protocol's error shape."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    error = UnknownOperationException(
        f"No route for {request.method} {request.url.path}: send Rekognition requests as POST / "
        "with an X-Amz-Target header."
    )
    answer = error_response(error, new_request_id())
    return Response(
        answer.body, status_code=status, headers=_closing_if_body_follows(request, answer.headers)
    )
