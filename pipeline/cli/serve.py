"""`facepipe serve`: the command line and the INI config file of the HTTP server.

Options come from the command line, then the config file (``--config``, section ``[server]``,
keys named like the options with underscores), then ServerOptions' defaults; the environment
adds the FACEPIPE_* settings and the credentials (:mod:`pipeline.protocol.credentials`). The
server itself is :func:`pipeline.protocol.server.serve`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipeline.cli.exit_status import ExitStatus
from pipeline.protocol.app import DEFAULT_METADATA_THREADS, DEFAULT_THREADS, LOCAL_HOSTS
from pipeline.protocol.connections import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_KEEP_ALIVE_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MIN_BODY_RATE,
)
from pipeline.protocol.credentials import read_ini_file
from pipeline.protocol.server import (
    DEFAULT_GRACEFUL_TIMEOUT_S,
    DEFAULT_HOST,
    DEFAULT_PORT,
    ServerOptions,
    ServerOptionsError,
    ServerStartError,
    serve,
)
from pipeline.protocol.sigv4 import DEFAULT_MAX_SKEW_S, DEFAULT_REPLAY_CACHE_ENTRIES

CONFIG_KEYS: dict[str, type] = {
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
"""The keys of the config file's ``[server]`` section and their types (ServerOptions' fields, with
one ``credentials_file`` for the repeatable ``--credentials-file``)."""


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
        kind = CONFIG_KEYS.get(key)
        if kind is None:
            raise ValueError(f"config file {path}: unknown key {key!r}; known: {', '.join(CONFIG_KEYS)}")
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


def server_options(args: argparse.Namespace) -> ServerOptions:
    """The options of a parsed command line over its config file's; ValueError for a bad file."""
    values: dict[str, Any] = read_config_file(args.config) if args.config else {}
    for key in CONFIG_KEYS.keys() - {"credentials_file"}:  # repeatable on the command line: below
        value = getattr(args, key, None)
        if value is not None:
            values[key] = value
    if args.no_auth:
        values["auth"] = False
    files = [Path(values.pop("credentials_file"))] if "credentials_file" in values else []
    files += args.credentials_file or []
    values["credentials_files"] = tuple(files)
    if "data_dir" in values:
        values["data_dir"] = Path(values["data_dir"])
    s3_root = values.pop("s3_root", None)
    if s3_root:  # an empty value is no root (not the working directory)
        values["s3_root"] = Path(s3_root)
    return ServerOptions(**values)


def serve_main(argv: list[str]) -> int:
    """Run `facepipe serve` until SIGINT/SIGTERM; returns the exit status (2: bad configuration,
    1: the store or the models could not be opened)."""
    args = build_parser().parse_args(argv)
    try:
        options = server_options(args)
    except ValueError as exc:  # the config file
        print(f"facepipe serve: error: {exc}", file=sys.stderr)
        return ExitStatus.USAGE_ERROR
    try:
        started = serve(options)
    except ServerOptionsError as exc:
        print(f"facepipe serve: error: {exc}", file=sys.stderr)
        return ExitStatus.USAGE_ERROR
    except ServerStartError as exc:
        print(f"facepipe serve: error: cannot open the store or load the models: {exc}", file=sys.stderr)
        return ExitStatus.FAILED
    return ExitStatus.OK if started else ExitStatus.FAILED
