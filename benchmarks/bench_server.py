"""Server benchmark (issue 5's figures): `facepipe bench --suite server`.

    python benchmarks/bench_server.py [--clients 1 4 16] [--client http|boto3] [--no-auth]
                                      [--server-threads 8] [--quick] [--out DIR] [BENCH OPTIONS]

is the same run as

    facepipe bench --suite server --sizes server=1,4,16 [--server-client http|boto3]
                   [--server-no-auth] [--server-threads 8] [--out DIR]

Requests/s and p50/p99 latency of SearchUsers, ListFaces and SearchFacesByImage at each client
count, through `facepipe serve` (SigV4 on unless --no-auth) and in process, their ratio, and the
serving process's CPU ms per request. Any other option goes to `facepipe bench` unchanged.
Writes DIR/results.json, summary.md and server.png.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.cli.bench import bench_main


def bench_args(argv: list[str]) -> list[str]:
    """The `facepipe bench` arguments this script runs for ``argv``."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, nargs="+", help="concurrent clients (default 1 4 16)")
    parser.add_argument("--client", choices=["http", "boto3"], help="HTTP client (default http)")
    parser.add_argument("--no-auth", action="store_true", help="serve and send unsigned requests")
    args, rest = parser.parse_known_args(argv)
    out = ["--suite", "server"]
    if args.clients:
        out += ["--sizes", "server=" + ",".join(str(c) for c in args.clients)]
    if args.client:
        out += ["--server-client", args.client]
    if args.no_auth:
        out.append("--server-no-auth")
    return [*out, *rest]


if __name__ == "__main__":
    sys.exit(bench_main(bench_args(sys.argv[1:])))
