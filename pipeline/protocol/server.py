"""``facepipe serve``'s server (uvicorn) for boto3, the AWS CLI and other Rekognition clients.

:func:`serve` runs it for a :class:`ServerOptions` (the command line and its config file are
:mod:`pipeline.cli.serve`); the environment adds the FACEPIPE_* settings and the credentials (see
:mod:`pipeline.protocol.credentials`). Authentication (SigV4) is on unless ``auth`` is off; with
it on and no credentials configured the server refuses to start. With auth off the server answers
only requests for local host names unless ``allowed_hosts`` says otherwise. Connection and time
limits: :mod:`pipeline.protocol.connections`. ``metrics`` serves Prometheus metrics on
``GET /metrics`` (:mod:`pipeline.protocol.metrics`); it is off by default because the endpoint is
unsigned and shows collection names and face counts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Settings
from pipeline.errors import RekognitionError
from pipeline.protocol.app import (
    DEFAULT_METADATA_THREADS,
    DEFAULT_THREADS,
    LOCAL_HOSTS,
    check_thread_counts,
    create_app,
    default_max_body_bytes,
)
from pipeline.protocol.connections import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_KEEP_ALIVE_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MIN_BODY_RATE,
    ConnectionLimits,
    ConnectionTracker,
    GuardedH11Protocol,
    accept_backlog,
    effective_max_connections,
    guarded_protocol,
    quiet_accept_errors,
    raise_open_file_limit,
)
from pipeline.protocol.credentials import CredentialsError, load_credentials
from pipeline.protocol.sigv4 import DEFAULT_MAX_SKEW_S, DEFAULT_REPLAY_CACHE_ENTRIES, SigV4Verifier

if TYPE_CHECKING:
    import uvicorn

logger = logging.getLogger("pipeline.protocol.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_GRACEFUL_TIMEOUT_S = 30

NO_AUTH_WARNING = """\
************************************************************************
WARNING: authentication is OFF (--no-auth). Any client that can reach
{url} can read, change and delete every collection.
Use this for local development only; never expose it to a network.
************************************************************************"""


@dataclass(frozen=True)
class ServerOptions:
    """How the server runs; every default is `facepipe serve`'s.

    host, port: the address bound. data_dir, store: the store (None: $FACEPIPE_HOME / the user
    data dir; $FACEPIPE_STORE, else SQLite in the data directory). auth: SigV4 on; with it,
    credentials_files (AWS shared-credentials files) add to $FACEPIPE_CREDENTIALS and the server's
    own AWS keys. max_body_bytes: largest request body in bytes (None: two images at the size
    limit plus 1 MiB). threads, metadata_threads: concurrent image / metadata requests.
    max_clock_skew_s: largest X-Amz-Date offset in seconds; replay_cache_entries: signatures
    remembered. allowed_hosts: comma-separated Host values (None: any with auth, local names
    without). max_connections, header_timeout_s, keep_alive_timeout_s, body_timeout_s,
    min_body_rate (bytes/s): connection limits. graceful_timeout_s: seconds in-flight requests get
    at shutdown. log_level: debug, info, warning or error. ssl_certfile, ssl_keyfile: PEM files for
    HTTPS. s3_endpoint_url, s3_root: where Image.S3Object is read. metrics: GET /metrics.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: Path | None = None
    store: str | None = None
    auth: bool = True
    credentials_files: tuple[Path, ...] = ()
    max_body_bytes: int | None = None
    threads: int = DEFAULT_THREADS
    metadata_threads: int = DEFAULT_METADATA_THREADS
    max_clock_skew_s: float = DEFAULT_MAX_SKEW_S
    replay_cache_entries: int = DEFAULT_REPLAY_CACHE_ENTRIES
    allowed_hosts: str | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    keep_alive_timeout_s: int = DEFAULT_KEEP_ALIVE_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    min_body_rate: int = DEFAULT_MIN_BODY_RATE
    graceful_timeout_s: int = DEFAULT_GRACEFUL_TIMEOUT_S
    log_level: str = "info"
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    s3_endpoint_url: str | None = None
    s3_root: Path | None = None
    metrics: bool = False


class ServerOptionsError(Exception):
    """Options the server cannot run with (found before anything is opened); the message says why."""


class ServerStartError(Exception):
    """The store could not be opened or the models loaded; the message says why."""


class _JsonAccessFormatter(logging.Formatter):
    """Access records are already JSON; other records become JSON lines too."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "pipeline.protocol.access":
            return record.getMessage()
        moment = datetime.fromtimestamp(record.created, tz=timezone.utc)
        line = {
            "time": moment.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonAccessFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)


def parse_allowed_hosts(value: str | None, auth: bool, bind_host: str) -> list[str] | None:
    """The Host header values to accept: ``value`` split at commas; by default None (any) with auth
    on, the local names plus ``bind_host`` (unless a wildcard address) with --no-auth."""
    if value is not None:
        hosts = [item.strip() for item in value.split(",") if item.strip()]
        if not hosts:
            raise ValueError("--allowed-hosts needs at least one host name ('*' for any)")
        return hosts
    if auth:
        return None
    hosts = list(LOCAL_HOSTS)
    if bind_host not in ("0.0.0.0", "::", "") and bind_host not in hosts:
        hosts.append(bind_host)
    return hosts


def connection_limits(options: ServerOptions, open_file_limit: int) -> ConnectionLimits:
    """The limits the options ask for, the connection cap lowered to half ``open_file_limit``."""
    requested = ConnectionLimits(
        max_connections=options.max_connections,
        header_timeout_s=options.header_timeout_s,
        keep_alive_timeout_s=options.keep_alive_timeout_s,
        body_timeout_s=options.body_timeout_s,
        min_body_rate=options.min_body_rate,
    )  # validated as asked, then the cap lowered to what the open-file limit allows
    return dataclasses.replace(
        requested, max_connections=effective_max_connections(requested.max_connections, open_file_limit)
    )


def uvicorn_server(
    app: Any,
    host: str,
    port: int,
    limits: ConnectionLimits,
    graceful_timeout_s: int = DEFAULT_GRACEFUL_TIMEOUT_S,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    open_file_limit: int | None = None,
) -> tuple[uvicorn.Server, ConnectionTracker]:
    """A uvicorn server for ``app`` enforcing ``limits``, and the tracker of its connections.

    open_file_limit: the process's RLIMIT_NOFILE, to size the accept backlog (default: uvicorn's).
    """
    import uvicorn

    protocol, tracker = guarded_protocol(limits)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        ws="none",  # the API has no WebSocket route; an upgrade would leave the connection layer
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_keep_alive=limits.keep_alive_timeout_s,
        timeout_graceful_shutdown=graceful_timeout_s,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        server_header=False,
        backlog=2048 if open_file_limit is None else accept_backlog(limits.max_connections, open_file_limit),
    )
    return uvicorn.Server(config), tracker


def run_server(server: uvicorn.Server) -> None:
    """``server.run()``, with accept() failures (EMFILE...) logged once per interval, not per attempt."""
    from uvicorn._compat import asyncio_run

    protocol = server.config.http
    handshake_timeout_s = None
    if server.config.is_ssl and isinstance(protocol, type) and issubclass(protocol, GuardedH11Protocol):
        handshake_timeout_s = protocol.limits.header_timeout_s  # a TLS handshake gets the header deadline
    asyncio_run(
        quiet_accept_errors(server.serve(), tls_handshake_timeout_s=handshake_timeout_s),
        loop_factory=server.config.get_loop_factory(),
    )


def serve(options: ServerOptions) -> bool:
    """Run the server until SIGINT/SIGTERM; True when it started listening.

    Raises ServerOptionsError for options it cannot run with (before the store or the models are
    opened) and ServerStartError when the store cannot be opened or the models loaded.
    """
    try:
        level = options.log_level
        if level.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError(f"--log-level {level!r}: use debug, info, warning or error")
        host, port = options.host, options.port
        scheme = "https" if options.ssl_certfile else "http"
        if bool(options.ssl_certfile) != bool(options.ssl_keyfile):
            raise ValueError("TLS needs both --ssl-certfile and --ssl-keyfile")
        verifier: SigV4Verifier | None = None
        if options.auth:
            credentials = load_credentials(list(options.credentials_files))
            if not credentials:
                raise ValueError(
                    "authentication is on but no credentials are configured: give --credentials-file, "
                    "set FACEPIPE_CREDENTIALS='AKID:SECRET' or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                    "or pass --no-auth for local development"
                )
            verifier = SigV4Verifier(
                credentials,
                max_skew_s=options.max_clock_skew_s,
                replay_cache_entries=options.replay_cache_entries,
            )
        allowed_hosts = parse_allowed_hosts(options.allowed_hosts, verifier is not None, host)
        settings = Settings.from_env(
            data_dir=options.data_dir,
            store=options.store,
            s3_endpoint_url=options.s3_endpoint_url,
            s3_root=options.s3_root,
        )
        threads, metadata_threads = options.threads, options.metadata_threads
        check_thread_counts(threads, metadata_threads)
        open_file_limit = raise_open_file_limit()
        limits = connection_limits(options, open_file_limit)
        max_body = options.max_body_bytes
        if max_body is None:
            max_body = default_max_body_bytes(settings.max_image_bytes)
        if max_body < 1:
            raise ValueError("--max-body-bytes must be positive")
    except (ValueError, CredentialsError) as exc:
        raise ServerOptionsError(str(exc)) from exc

    _configure_logging(level)
    url = f"{scheme}://{host}:{port}"
    if verifier is None:
        print(NO_AUTH_WARNING.format(url=url), file=sys.stderr, flush=True)

    from pipeline.service import FacePipe

    started = time.perf_counter()
    fp = FacePipe(settings)
    try:
        # open the store and load the models now, so the first request is not the slow one
        _ = fp.store, fp.engine
        shared_record = getattr(fp.store, "replay_guard", None)
        if verifier is not None and shared_record is not None:
            # a store shared by several servers remembers signatures for all of them
            verifier.replays = shared_record()
    except (RekognitionError, ImportError) as exc:  # explained by its message: no traceback
        logger.error("cannot start: %s", exc)
        raise ServerStartError(str(exc)) from exc
    except Exception as exc:
        logger.exception("cannot start: %s", exc)
        raise ServerStartError(str(exc)) from exc
    logger.info("store and models ready in %.1f s", time.perf_counter() - started)

    def close_store() -> None:
        fp.close()
        logger.info("requests finished, store closed")

    app = create_app(
        fp,
        verifier,
        max_body_bytes=max_body,
        threads=threads,
        on_shutdown=close_store,
        metadata_threads=metadata_threads,
        limits=limits,
        allowed_hosts=allowed_hosts,
        metrics=options.metrics,
    )
    server, _ = uvicorn_server(
        app,
        host,
        port,
        limits,
        graceful_timeout_s=options.graceful_timeout_s,
        ssl_certfile=options.ssl_certfile,
        ssl_keyfile=options.ssl_keyfile,
        open_file_limit=open_file_limit,
    )
    if limits.max_connections < options.max_connections:
        logger.warning("--max-connections lowered to %d: half the open-file limit", limits.max_connections)
    logger.info(
        "serving %s (data dir %s, auth %s, %d image + %d metadata threads, body cap %d bytes, "
        "%d connections at most, allowed hosts %s, metrics %s)",
        url,
        settings.data_dir,
        "on" if verifier else "OFF",
        threads,
        metadata_threads,
        max_body,
        limits.max_connections,
        ", ".join(allowed_hosts) if allowed_hosts else "any",
        "on GET /metrics (unsigned)" if options.metrics else "off",
    )
    run_server(server)  # on SIGTERM/SIGINT uvicorn finishes in-flight requests, then re-raises the signal
    return bool(server.started)
