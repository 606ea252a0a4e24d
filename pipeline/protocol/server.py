"""``facepipe serve``: the HTTP server (uvicorn) for boto3, the AWS CLI and other Rekognition clients.

Options come from the command line, then an INI config file (``--config``, section ``[server]``,
keys named like the options with underscores), then the environment (FACEPIPE_* settings and the
credentials, see :mod:`pipeline.protocol.credentials`). Authentication (SigV4) is on unless
``--no-auth``; with it on and no credentials configured the server refuses to start.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.protocol.app import DEFAULT_THREADS, create_app, default_max_body_bytes
from pipeline.protocol.credentials import CredentialsError, load_credentials, read_ini_file
from pipeline.protocol.sigv4 import DEFAULT_MAX_SKEW_S, SigV4Verifier

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
    "auth": bool,
    "credentials_file": str,
    "max_body_bytes": int,
    "threads": int,
    "max_clock_skew_s": float,
    "graceful_timeout_s": int,
    "log_level": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "s3_endpoint_url": str,
    "s3_root": str,
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
        "--threads", type=int, help=f"requests answered concurrently (default {DEFAULT_THREADS})"
    )
    parser.add_argument(
        "--max-clock-skew-s",
        type=float,
        help=f"largest accepted X-Amz-Date offset (default {DEFAULT_MAX_SKEW_S:g} s); a signature is accepted again only within 5 s of its first use",
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


def serve_main(argv: list[str]) -> int:
    """Run the server until SIGINT/SIGTERM; returns the process exit status (2: bad configuration)."""
    import uvicorn

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
            verifier = SigV4Verifier(credentials, max_skew_s=skew)
        settings = Settings.from_env(
            data_dir=options.get("data_dir"),
            s3_endpoint_url=options.get("s3_endpoint_url"),
            s3_root=Path(options["s3_root"]) if options.get("s3_root") else None,
        )
        threads = int(options.get("threads", DEFAULT_THREADS))
        if threads < 1:
            raise ValueError("--threads must be at least 1")
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
    except Exception as exc:
        logger.exception("cannot start: %s", exc)
        print(f"facepipe serve: error: cannot open the store or load the models: {exc}", file=sys.stderr)
        return 1
    logger.info("store and models ready in %.1f s", time.perf_counter() - started)

    def close_store() -> None:
        fp.close()
        logger.info("requests finished, store closed")

    app = create_app(fp, verifier, max_body_bytes=max_body, threads=threads, on_shutdown=close_store)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(options.get("graceful_timeout_s", DEFAULT_GRACEFUL_TIMEOUT_S)),
        ssl_certfile=options.get("ssl_certfile"),
        ssl_keyfile=options.get("ssl_keyfile"),
        server_header=False,
    )
    logger.info(
        "serving %s (data dir %s, auth %s, %d threads, body cap %d bytes)",
        url,
        settings.data_dir,
        "on" if verifier else "OFF",
        threads,
        max_body,
    )
    server = uvicorn.Server(config)
    server.run()  # on SIGTERM/SIGINT uvicorn finishes in-flight requests, then re-raises the signal
    return 0 if server.started else 1
