"""Connection limits for ``facepipe serve``: a cap on open connections, header and idle deadlines.

uvicorn's own limits are used where they exist (``timeout_keep_alive`` for idle keep-alive
connections, h11's 16 KiB cap on the request head); what it lacks is added by
:func:`guarded_protocol`, a subclass of uvicorn's h11 protocol:

- a **header deadline**: from the moment a connection is accepted, or its previous response was
  sent, the client has ``header_timeout_s`` to deliver a complete request head, else the
  connection is closed (slow or idle connections are not held forever); with TLS, the handshake
  gets the same time (:func:`limit_tls_handshakes`; a connection still in it is not counted
  against the cap);
- a **connection cap** (``max_connections``): when a new connection would exceed it, the
  connection that has waited longest *without a request in flight* (idle keep-alive, or still
  sending its head) is closed to make room, so a flood of idle connections cannot lock out
  ``/health`` or signed clients; only when every connection has a request in flight is the new
  one refused, with a 503 ThrottlingException (retryable) and closed at once.

The body deadline is the app's (see :mod:`pipeline.protocol.app`): it knows the declared length.
asyncio accepts up to the listen backlog in one go before any new connection is counted, so the
backlog is sized from the files the cap leaves free (:func:`accept_backlog`).
:func:`quiet_accept_errors` keeps accept() failures (EMFILE and the like) to one log line per
interval instead of a traceback per attempt, and :func:`raise_open_file_limit` raises the soft
RLIMIT_NOFILE to the hard limit.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("pipeline.protocol.connections")

DEFAULT_MAX_CONNECTIONS = 1024
"""Open connections at most (lowered to half the open-file limit where that is smaller)."""
DEFAULT_HEADER_TIMEOUT_S = 10.0
"""Seconds a connection gets to deliver a complete request head (after accept or a response)."""
DEFAULT_KEEP_ALIVE_TIMEOUT_S = 5
"""Seconds an idle keep-alive connection stays open (uvicorn's timeout_keep_alive)."""
DEFAULT_BODY_TIMEOUT_S = 10.0
"""Seconds any request body gets, on top of its length at the minimum rate."""
DEFAULT_MIN_BODY_RATE = 64 * 1024
"""Slowest accepted upload (bytes per second): a 15 MB body gets 10 s + 229 s."""
ACCEPT_ERROR_LOG_INTERVAL_S = 10.0
"""At most one log line per this many seconds about failing accept() calls."""

_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

_REFUSED_BODY = b'{"__type":"ThrottlingException","Message":"Too many open connections with requests in flight; retry later."}'
REFUSED_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/x-amz-json-1.1\r\n"
    b"x-amzn-ErrorType: ThrottlingException\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n" % len(_REFUSED_BODY)
) + _REFUSED_BODY
"""What a connection over the cap gets when no idle connection can make room (then it is closed)."""


@dataclass(frozen=True)
class ConnectionLimits:
    """The server's time and connection limits (seconds, bytes per second, connections)."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    keep_alive_timeout_s: int = DEFAULT_KEEP_ALIVE_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    min_body_rate: int = DEFAULT_MIN_BODY_RATE

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError("--max-connections must be at least 1")
        for name in ("header_timeout_s", "keep_alive_timeout_s", "body_timeout_s", "min_body_rate"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")

    def body_deadline_s(self, length: int) -> float:
        """Seconds a body of ``length`` bytes may take to arrive."""
        return self.body_timeout_s + length / self.min_body_rate


class ConnectionTracker:
    """The open connections of one server, in the order they last became idle.

    Not thread-safe: used from the event loop only. ``evicted`` and ``refused`` count the
    connections closed to make room and the ones turned away.
    """

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._idle: OrderedDict[Any, None] = OrderedDict()
        self._busy: set[Any] = set()
        self.evicted = 0
        self.refused = 0

    def __len__(self) -> int:
        return len(self._idle) + len(self._busy)

    def opened(self, connection: Any) -> Any | None:
        """Register a new (idle) connection; the connection to close to stay within the cap, if any.

        That is the longest-idle other connection, or ``connection`` itself when all others are busy.
        """
        self._idle[connection] = None
        if len(self) <= self.max_connections:
            return None
        for candidate in self._idle:
            if candidate is not connection:
                self._idle.pop(candidate)
                self.evicted += 1
                return candidate
        self._idle.pop(connection)
        self.refused += 1
        return connection

    def busy(self, connection: Any) -> None:
        """``connection`` has a request in flight: it is not closed to make room."""
        if self._idle.pop(connection, False) is None:
            self._busy.add(connection)

    def idle(self, connection: Any) -> None:
        """``connection`` finished its request and waits for the next (it may be closed to make room)."""
        if connection in self._busy:
            self._busy.discard(connection)
            self._idle[connection] = None

    def closed(self, connection: Any) -> None:
        """Forget ``connection``."""
        self._idle.pop(connection, None)
        self._busy.discard(connection)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a place under the connection cap."""

    tracker: ClassVar[ConnectionTracker]
    limits: ClassVar[ConnectionLimits]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_flight = False
        self._arm_head_deadline()
        victim = self.tracker.opened(self)
        if victim is self:
            self._cancel_head_deadline()
            transport.write(REFUSED_RESPONSE)
            transport.close()
        elif victim is not None:
            victim.close_idle()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._note_state()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request
        self._in_flight = False
        self._note_state()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        self.tracker.closed(self)
        super().connection_lost(exc)

    def close_idle(self) -> None:
        """Close this connection (it has no request in flight) to make room for a new one."""
        self._cancel_head_deadline()
        if not self.transport.is_closing():
            self.transport.close()

    def _note_state(self) -> None:
        if self.transport.is_closing():
            return
        in_flight = self.cycle is not None and not self.cycle.response_complete
        if in_flight and not self._in_flight:
            self._in_flight = True
            self._cancel_head_deadline()
            self.tracker.busy(self)
        elif not in_flight and self._head_timer is None:
            self.tracker.idle(self)
            self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_deadline_passed)

    def _cancel_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_deadline_passed(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> tuple[type[GuardedH11Protocol], ConnectionTracker]:
    """A protocol class for ``uvicorn.Config(http=...)`` enforcing ``limits``, and its tracker."""
    tracker = ConnectionTracker(limits.max_connections)
    protocol = type("FacepipeH11Protocol", (GuardedH11Protocol,), {"tracker": tracker, "limits": limits})
    return protocol, tracker


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit where allowed; the soft limit now in force."""
    try:
        import resource
    except ImportError:  # not on this platform
        return 1 << 16
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


def effective_max_connections(requested: int, open_file_limit: int) -> int:
    """``requested``, lowered to half the open-file limit (the rest: store, models, threads, logs)."""
    return max(1, min(requested, open_file_limit // 2))


def accept_backlog(max_connections: int, open_file_limit: int) -> int:
    """The listen backlog, which is also how many connections asyncio accepts in one go (before any
    is counted against the cap): a quarter of the files the cap leaves free, 64 to 2,048."""
    return max(64, min(2048, (open_file_limit - max_connections) // 4))


class AcceptErrorFilter:
    """An asyncio exception handler that logs accept() resource failures once per interval.

    Other exceptions go to the loop's default handler unchanged.
    """

    def __init__(self, interval_s: float = ACCEPT_ERROR_LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last = -float("inf")
        self.suppressed = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not (isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS):
            loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - self._last < self.interval_s:
            self.suppressed += 1
            return
        logger.warning(
            "cannot accept connections: %s (%d more such failures since the last such line); "
            "lower --max-connections or raise the open-file limit",
            exc.strerror or exc,
            self.suppressed,
        )
        self._last = now
        self.suppressed = 0


async def quiet_accept_errors(serve: Any, tls_handshake_timeout_s: float | None = None) -> None:
    """Await the coroutine ``serve`` with :class:`AcceptErrorFilter` as the loop's exception handler.

    tls_handshake_timeout_s: with TLS, seconds a connection gets to complete its handshake
    (see :func:`limit_tls_handshakes`); None leaves asyncio's default (60 s).
    """
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(AcceptErrorFilter())
    if tls_handshake_timeout_s is not None:
        limit_tls_handshakes(loop, tls_handshake_timeout_s)
    await serve


def limit_tls_handshakes(loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
    """Make the servers ``loop`` creates from now on give TLS handshakes ``timeout_s`` seconds.

    A connection still in its handshake has not reached the HTTP protocol, so neither the header
    deadline nor the connection cap sees it; uvicorn passes no ``ssl_handshake_timeout`` to
    ``create_server`` (asyncio's default is 60 s), so it is added here.
    """
    create_server = loop.create_server

    async def create_server_with_handshake_limit(*args: Any, **kwargs: Any) -> asyncio.Server:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", timeout_s)
        return await create_server(*args, **kwargs)

    try:
        loop.create_server = create_server_with_handshake_limit  # type: ignore[method-assign]
    except AttributeError:  # a loop type whose methods cannot be replaced (uvloop)
        logger.warning(
            "cannot limit TLS handshakes on this event loop (%s): they get its default timeout",
            type(loop).__name__,
        )
