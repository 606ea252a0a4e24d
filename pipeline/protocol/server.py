"""``facepipe serve``: the HTTP server (uvicorn) for boto3, the AWS CLI and other Rekognition clients.

Options come from the command line, then an INI config file (``--config``, section ``[server]``,
keys named like the options with underscores), then the environment (FACEPIPE_* settings and the
credentials, see :mod:`pipeline.protocol.credentials`). Authentication (SigV4) is on unless
``--no-auth``; with it on and no credentials configured the server refuses to start. With
``--no-auth`` the server answers only requests for local host names unless ``--allowed-hosts``
says otherwise. Connection and time limits: :mod:`pipeline.protocol.connections`. ``--metrics``
serves Prometheus metrics on ``GET /metrics`` (:mod:`pipeline.protocol.metrics`); it is off by
default because the endpoint is unsigned and shows collection names and face counts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
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
from pipeline.protocol.credentials import CredentialsError, load_credentials, read_ini_file
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

_CONFIG_KEYS: dict[str, type] = {
    "host": str,
    "port": int,
    "data_dir": str,
    "store": str,
    "auth": bool,
    "credentials_file": str,
    "max_body_bytes": int,
    "threads": int,
    "metadata_threads": int,
    "max_clock_skew_s": float,
    "replay_cache_entries": int,
    "allowed_hosts": str,
    "max_connections": int,
    "header_timeout_s": float,
    "keep_alive_timeout_s": int,
    "body_timeout_s": float,
    "min_body_rate": int,
    "graceful_timeout_s": int,
    "log_level": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "s3_endpoint_url": str,
    "s3_root": str,
    "metrics": bool,
}


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


def build_parser() -> argparse.ArgumentParser:
    """The ``facepipe serve`` argument parser (defaults None: config file and defaults fill in)."""
    parser = argparse.ArgumentParser(
        prog="facepipe serve",
        description="Serve the Rekognition face-collection API over HTTP (JSON 1.1 protocol, SigV4).",
    )
    parser.add_argument("--host", help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, help=f"port to bind (default {DEFAULT_PORT})")
    parser.add_argument("--data-dir", help="data directory (default: $FACEPIPE_HOME or the user data dir)")
    parser.add_argument(
        "--store",
        help="the PostgreSQL store several servers and jobs share, postgresql://user@host:port/db (default: $FACEPIPE_STORE, else SQLite in the data directory; keep the password in $FACEPIPE_STORE or ~/.pgpass, not on the command line)",
    )
    parser.add_argument("--config", type=Path, help="INI config file with a [server] section")
    parser.add_argument(
        "--credentials-file",
        type=Path,
        action="append",
        help="accepted credentials, AWS shared-credentials format (repeatable)",
    )
    parser.add_argument(
        "--no-auth",
        action="store_true",
        default=None,
        help="accept unsigned requests (local development only)",
    )
    parser.add_argument("--max-body-bytes", type=int, help="largest request body accepted (bytes)")
    parser.add_argument(
        "--threads",
        type=int,
        help=f"image requests (IndexFaces, DetectFaces, CompareFaces, *ByImage) answered concurrently (default {DEFAULT_THREADS})",
    )
    parser.add_argument(
        "--metadata-threads",
        type=int,
        help=f"threads for requests without an image, kept apart from image work (default {DEFAULT_METADATA_THREADS}; 0 shares the image threads)",
    )
    parser.add_argument(
        "--max-clock-skew-s",
        type=float,
        help=f"largest accepted X-Amz-Date offset (default {DEFAULT_MAX_SKEW_S:g} s); a signature is accepted once while its date is within it",
    )
    parser.add_argument(
        "--replay-cache-entries",
        type=int,
        help=f"signatures remembered to refuse replays, ~110 bytes each (default {DEFAULT_REPLAY_CACHE_ENTRIES}); when full, requests are throttled",
    )
    parser.add_argument(
        "--allowed-hosts",
        help="comma-separated Host header values accepted (.example.com: subdomains too; *: any); "
        f"default: any with auth on, {', '.join(LOCAL_HOSTS)} (and --host) with --no-auth",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        help=f"open connections at most; idle ones are closed to make room (default {DEFAULT_MAX_CONNECTIONS}, at most half the open-file limit)",
    )
    parser.add_argument(
        "--header-timeout-s",
        type=float,
        help=f"seconds a connection gets to send a complete request head (default {DEFAULT_HEADER_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--keep-alive-timeout-s",
        type=int,
        help=f"seconds an idle keep-alive connection stays open (default {DEFAULT_KEEP_ALIVE_TIMEOUT_S})",
    )
    parser.add_argument(
        "--body-timeout-s",
        type=float,
        help=f"seconds every request body gets on top of its length at --min-body-rate (default {DEFAULT_BODY_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--min-body-rate",
        type=int,
        help=f"slowest accepted upload, bytes/s (default {DEFAULT_MIN_BODY_RATE})",
    )
    parser.add_argument(
        "--graceful-timeout-s",
        type=int,
        help=f"seconds in-flight requests get to finish on shutdown (default {DEFAULT_GRACEFUL_TIMEOUT_S:g})",
    )
    parser.add_argument("--log-level", help="debug, info, warning or error (default info)")
    parser.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--ssl-keyfile", help="private key for --ssl-certfile (PEM)")
    parser.add_argument("--s3-endpoint-url", help="S3-compatible endpoint Image.S3Object is read from")
    parser.add_argument("--s3-root", help="local directory whose sub-directories serve as S3 buckets")
    parser.add_argument(
        "--metrics",
        action="store_true",
        default=None,
        help="serve Prometheus metrics on GET /metrics (unsigned, subject to --allowed-hosts; shows "
        "collection names and face counts, so off by default)",
    )
    return parser


def read_config_file(path: Path) -> dict[str, Any]:
    """The ``[server]`` section of an INI file, typed; raises ValueError saying what is wrong."""
    parser = read_ini_file(path, "config file")
    if not parser.has_section("server"):
        raise ValueError(f"config file {path} has no [server] section")
    values: dict[str, Any] = {}
    section = parser["server"]
    for key in section:
        kind = _CONFIG_KEYS.get(key)
        if kind is None:
            raise ValueError(f"config file {path}: unknown key {key!r}; known: {', '.join(_CONFIG_KEYS)}")
        try:
            if kind is bool:
                values[key] = section.getboolean(key)
            elif kind is int:
                values[key] = section.getint(key)
            elif kind is float:
                values[key] = section.getfloat(key)
            else:
                values[key] = section[key]
        except ValueError:
            raise ValueError(
                f"config file {path}: {key} = {section[key]!r} is not a {kind.__name__}"
            ) from None
    return values


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = read_config_file(args.config) if args.config else {}
    for key in _CONFIG_KEYS.keys() - {"credentials_file"}:  # repeatable on the command line: below
        value = getattr(args, key, None)
        if value is not None:
            options[key] = value
    if args.no_auth:
        options["auth"] = False
    files = [Path(options.pop("credentials_file"))] if "credentials_file" in options else []
    files += args.credentials_file or []
    options["credentials_files"] = files
    return options


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


def connection_limits(options: dict[str, Any], open_file_limit: int) -> ConnectionLimits:
    """The limits the options ask for, the connection cap lowered to half ``open_file_limit``."""
    requested = ConnectionLimits(
        max_connections=int(options.get("max_connections", DEFAULT_MAX_CONNECTIONS)),
        header_timeout_s=float(options.get("header_timeout_s", DEFAULT_HEADER_TIMEOUT_S)),
        keep_alive_timeout_s=int(options.get("keep_alive_timeout_s", DEFAULT_KEEP_ALIVE_TIMEOUT_S)),
        body_timeout_s=float(options.get("body_timeout_s", DEFAULT_BODY_TIMEOUT_S)),
        min_body_rate=int(options.get("min_body_rate", DEFAULT_MIN_BODY_RATE)),
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


def serve_main(argv: list[str]) -> int:
    """Run the server until SIGINT/SIGTERM; returns the process exit status (2: bad configuration)."""
    args = build_parser().parse_args(argv)
    try:
        options = _options(args)
        level = str(options.get("log_level", "info"))
        if level.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError(f"--log-level {level!r}: use debug, info, warning or error")
        host = str(options.get("host", DEFAULT_HOST))
        port = int(options.get("port", DEFAULT_PORT))
        scheme = "https" if options.get("ssl_certfile") else "http"
        if bool(options.get("ssl_certfile")) != bool(options.get("ssl_keyfile")):
            raise ValueError("TLS needs both --ssl-certfile and --ssl-keyfile")
        verifier: SigV4Verifier | None = None
        if options.get("auth", True):
            credentials = load_credentials(options["credentials_files"])
            if not credentials:
                raise ValueError(
                    "authentication is on but no credentials are configured: give --credentials-file, "
                    "set FACEPIPE_CREDENTIALS='AKID:SECRET' or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                    "or pass --no-auth for local development"
                )
            skew = float(options.get("max_clock_skew_s", DEFAULT_MAX_SKEW_S))
            entries = int(options.get("replay_cache_entries", DEFAULT_REPLAY_CACHE_ENTRIES))
            verifier = SigV4Verifier(credentials, max_skew_s=skew, replay_cache_entries=entries)
        allowed_hosts = parse_allowed_hosts(options.get("allowed_hosts"), verifier is not None, host)
        settings = Settings.from_env(
            data_dir=options.get("data_dir"),
            store=options.get("store"),
            s3_endpoint_url=options.get("s3_endpoint_url"),
            s3_root=Path(options["s3_root"]) if options.get("s3_root") else None,
        )
        threads = int(options.get("threads", DEFAULT_THREADS))
        metadata_threads = int(options.get("metadata_threads", DEFAULT_METADATA_THREADS))
        check_thread_counts(threads, metadata_threads)
        requested_connections = int(options.get("max_connections", DEFAULT_MAX_CONNECTIONS))
        open_file_limit = raise_open_file_limit()
        limits = connection_limits(options, open_file_limit)
        max_body = int(options.get("max_body_bytes", default_max_body_bytes(settings.max_image_bytes)))
        if max_body < 1:
            raise ValueError("--max-body-bytes must be positive")
    except (ValueError, CredentialsError) as exc:
        print(f"facepipe serve: error: {exc}", file=sys.stderr)
        return 2

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
        print(f"facepipe serve: error: cannot open the store or load the models: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        logger.exception("cannot start: %s", exc)
        print(f"facepipe serve: error: cannot open the store or load the models: {exc}", file=sys.stderr)
        return 1
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
        metrics=bool(options.get("metrics", False)),
    )
    server, _ = uvicorn_server(
        app,
        host,
        port,
        limits,
        graceful_timeout_s=int(options.get("graceful_timeout_s", DEFAULT_GRACEFUL_TIMEOUT_S)),
        ssl_certfile=options.get("ssl_certfile"),
        ssl_keyfile=options.get("ssl_keyfile"),
        open_file_limit=open_file_limit,
    )
    if limits.max_connections < requested_connections:
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
        "on GET /metrics (unsigned)" if options.get("metrics") else "off",
    )
    run_server(server)  # on SIGTERM/SIGINT uvicorn finishes in-flight requests, then re-raises the signal
    return 0 if server.started else 1
