"""The ASGI application: Rekognition JSON 1.1 on ``POST /``, a health check on ``GET /health``.

Requests are size-capped, SigV4-verified (unless auth is off), answered by
:func:`pipeline.protocol.handler.handle_request` on a thread pool (the service's calls block), and
logged as one JSON line each on the ``pipeline.protocol.access`` logger.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime, timezone

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.errors import (
    InternalServerError,
    RekognitionError,
    RequestEntityTooLargeException,
    SerializationException,
    UnknownOperationException,
)
from pipeline.protocol.handler import (
    ProtocolResponse,
    Service,
    error_response,
    handle_request,
    new_request_id,
    operation_from_target,
)
from pipeline.protocol.sigv4 import SignedRequest, SigV4Verifier

access_log = logging.getLogger("pipeline.protocol.access")
logger = logging.getLogger("pipeline.protocol")

DEFAULT_THREADS = 8
"""Requests answered at once (the service's blocking calls run on this many threads)."""


def default_max_body_bytes(max_image_bytes: int) -> int:
    """Body cap that fits two images of ``max_image_bytes`` as base64 (CompareFaces) plus 1 MiB."""
    return 2 * (4 * ((max_image_bytes + 2) // 3)) + (1 << 20)


class _BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, max_body_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise SerializationException("Content-Length is not a number.") from None
        if length > max_body_bytes:
            raise _BodyTooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body_bytes:
            raise _BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    fp: Service,
    verifier: SigV4Verifier | None,
    max_body_bytes: int,
    threads: int = DEFAULT_THREADS,
    on_shutdown: Callable[[], None] | None = None,
) -> Starlette:
    """The server's ASGI app for one service instance.

    verifier: None turns authentication off; max_body_bytes: larger request bodies are refused
    with 413 RequestEntityTooLargeException; threads: concurrent service calls; on_shutdown: run
    once the requests in flight have finished (e.g. closing the store).
    """
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="facepipe-request")

    async def rekognition(request: Request) -> Response:
        started = time.perf_counter()
        request_id = new_request_id()
        target = request.headers.get("x-amz-target")
        operation = operation_from_target(target)
        body = b""
        access_key = None
        answer: ProtocolResponse
        try:
            body = await _read_body(request, max_body_bytes)
            if verifier is not None:
                signed = SignedRequest(
                    method=request.method,
                    path=request.scope.get("raw_path", b"/").decode("latin-1").split("?", 1)[0],
                    query=request.scope.get("query_string", b"").decode("latin-1"),
                    headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]],
                    body=body,
                )
                # hashing the body (up to the cap) off the event loop, like the service call
                verified = await asyncio.get_running_loop().run_in_executor(executor, verifier.verify, signed)
                access_key = verified.access_key_id
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
            loop = asyncio.get_running_loop()
            answer = await loop.run_in_executor(executor, handle_request, fp, target, body, request_id)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                json.dumps(
                    {
                        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                        "request_id": request_id,
                        "operation": operation or (target or "")[:100],
                        "status": answer.status,
                        "error": answer.headers.get("x-amzn-ErrorType"),
                        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                        "bytes_in": len(body),
                        "bytes_out": len(answer.body),
                        "client": request.client.host if request.client else None,
                        "access_key_id": access_key,
                    }
                )
            )
        return Response(answer.body, status_code=answer.status, headers=answer.headers)

    async def health(request: Request) -> Response:
        request_id = new_request_id()
        body = json.dumps({"status": "ok", "operations": len(fp.operations)}).encode()
        headers = {"Content-Type": "application/json", "x-amzn-RequestId": request_id}
        return Response(body, status_code=200, headers=headers)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            executor.shutdown(wait=True)
            if on_shutdown is not None:
                on_shutdown()

    routes = [
        Route("/", rekognition, methods=["POST"]),
        Route("/health", health, methods=["GET", "HEAD"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _route_error},
    )


async def _route_error(request: Request, exc: Exception) -> Response:
    """404/405 for anything but ``POST /`` and ``GET /health``, in the protocol's error shape."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    error = UnknownOperationException(
        f"No route for {request.method} {request.url.path}: send Rekognition requests as POST / "
        "with an X-Amz-Target header."
    )
    answer = error_response(error, new_request_id())
    return Response(answer.body, status_code=status, headers=answer.headers)
