"""A protocol-test server in its own process (so its memory and open-file limit are its own).

    python -m tests.protocol.hostile_server PORT [--nofile N] [--max-connections N]
        [--header-timeout-s S] [--body-timeout-s S] [--no-auth]

Serves tests.support's MemoryService with SigV4 (tests.support.server's ACCESS_KEY_ID/SECRET) unless --no-auth,
through the same connection layer as `facepipe serve` (uvicorn_server + run_server), logging to
stderr like `facepipe serve` does.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys

from pipeline.protocol.app import create_app
from pipeline.protocol.connections import ConnectionLimits, raise_open_file_limit
from pipeline.protocol.server import (
    ServerOptions,
    _configure_logging,
    connection_limits,
    run_server,
    uvicorn_server,
)
from pipeline.protocol.sigv4 import SigV4Verifier
from tests.support.memory_service import MemoryService
from tests.support.server import ACCESS_KEY_ID, SECRET


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--nofile", type=int, help="soft and hard RLIMIT_NOFILE for this process")
    parser.add_argument("--max-connections", type=int)
    parser.add_argument("--header-timeout-s", type=float)
    parser.add_argument("--body-timeout-s", type=float)
    parser.add_argument("--no-auth", action="store_true")
    args = parser.parse_args()
    if args.nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))
    options = {
        k: v for k, v in vars(args).items() if v is not None and k not in ("port", "nofile", "no_auth")
    }
    open_file_limit = raise_open_file_limit()
    limits: ConnectionLimits = connection_limits(ServerOptions(**options), open_file_limit)
    _configure_logging("info")
    logging.getLogger("pipeline.protocol.access").setLevel(logging.WARNING)
    verifier = None if args.no_auth else SigV4Verifier({ACCESS_KEY_ID: SECRET})
    app = create_app(MemoryService(), verifier, max_body_bytes=16 << 20, threads=2, limits=limits)
    server, _ = uvicorn_server(app, "127.0.0.1", args.port, limits, open_file_limit=open_file_limit)
    print(f"max connections {limits.max_connections}", file=sys.stderr, flush=True)
    run_server(server)


if __name__ == "__main__":
    main()
