"""Store benchmark (issue 3's figures): `facepipe bench --suite search --suite associate`.

    python benchmarks/bench_store.py [--sizes 10000 100000 1000000] [--quick] [--out DIR] [BENCH OPTIONS]

is the same run as

    facepipe bench --suite search --suite associate --sizes search=10000,100000,1000000 [--out DIR]

SearchFaces latency p50/p95/p99 through the store (exact up to 100k faces, quantized scan above),
the share of above-threshold matches found and recall@10 against exact search, bytes per face in
memory and on disk, and AssociateFaces calls/s with durable commits. Vectors come from the one
synthetic generator (pipeline/bench/synthetic.py). Any other option goes to `facepipe bench`
unchanged (e.g. --repeat 3, --threads 2). Writes DIR/results.json, summary.md and plots.
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
    parser.add_argument("--sizes", type=int, nargs="+", help="collection sizes (default 10k, 100k, 1M)")
    args, rest = parser.parse_known_args(argv)
    sizes = ["--sizes", "search=" + ",".join(str(n) for n in args.sizes)] if args.sizes else []
    return ["--suite", "search", "--suite", "associate", *sizes, *rest]


if __name__ == "__main__":
    sys.exit(bench_main(bench_args(sys.argv[1:])))
