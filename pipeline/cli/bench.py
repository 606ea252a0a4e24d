"""`facepipe bench`: reproducible benchmark runs with plots and an accuracy report.

    facepipe bench [--suite NAME ...] [--provider cpu|cuda|auto] [--threads N] [--repeat N]
                   [--warmup N] [--quick] [--seed N] [--sizes SUITE=N,N ...] [--pairs PATH] [--out DIR]
                   [--server-client http|boto3] [--server-no-auth] [--server-threads N]
                   [--compare OLD.json [NEW.json]] [--readme-section RESULTS.json]

The command line of ``pipeline.bench``: it parses the arguments into ``BenchOptions`` and runs
them. The accuracy suite reads the labeled pairs CSV named by ``--pairs`` or ``$FACEPIPE_PAIRS``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.bench.report import load_run, markdown_compare, readme_section
from pipeline.bench.runner import SUITES, BenchOptions, run_benchmarks
from pipeline.cli.arguments import int_at_least
from pipeline.cli.exit_status import ExitStatus

PAIRS_VARIABLE = "FACEPIPE_PAIRS"
"""Environment variable naming the accuracy suite's labeled pairs CSV when --pairs is not given."""


def _sizes(text: str) -> tuple[str, list[int]]:
    """Parse ``SUITE=N,N,...`` (argparse type)."""
    suite, sep, values = text.partition("=")
    if not sep or suite not in SUITES:
        raise argparse.ArgumentTypeError(
            f"expected SUITE=N,N,... with SUITE one of {', '.join(SUITES)}; got {text!r}"
        )
    try:
        sizes = [int(v.replace("_", "")) for v in values.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must be integers: {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be positive integers: {text!r}")
    return suite, sizes


_positive = int_at_least(1)
_non_negative = int_at_least(0)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `facepipe bench`."""
    p = argparse.ArgumentParser(
        prog="facepipe bench",
        description="Benchmark facepipe: pipeline speed, search latency and recall, AssociateFaces "
        "throughput, verification accuracy and HTTP throughput. Writes results.json, summary.md and "
        "PNG plots.",
    )
    p.add_argument(
        "--suite",
        action="append",
        choices=SUITES,
        help="suite to run (repeatable; default: every suite that can run here)",
    )
    p.add_argument(
        "--provider",
        choices=("cpu", "cuda", "auto"),
        default="auto",
        help="execution provider (default auto)",
    )
    p.add_argument(
        "--threads",
        type=_non_negative,
        default=0,
        help="intra-op threads for every library (0: their default)",
    )
    p.add_argument("--repeat", type=_positive, help="timed runs per figure (default 5; 3 with --quick)")
    p.add_argument("--warmup", type=_non_negative, default=1, help="untimed runs before timing (default 1)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test taking seconds per suite")
    p.add_argument(
        "--sizes",
        action="append",
        type=_sizes,
        default=[],
        metavar="SUITE=N,N",
        help="sizes for one suite: search=collection sizes, pipeline=batch sizes, associate=faces per user, "
        "server=concurrent clients (repeatable)",
    )
    p.add_argument(
        "--pairs",
        type=Path,
        help=f"labeled pairs CSV for the accuracy suite (default ${PAIRS_VARIABLE}; without either a "
        "run of every suite skips it, and --suite accuracy is a usage error)",
    )
    p.add_argument("--out", type=Path, help="output folder (default benchmarks/results/<date>-<provider>)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (default 0)")
    p.add_argument(
        "--server-client",
        choices=("http", "boto3"),
        default="http",
        help="server suite's client: http (lean, SigV4-signed, persistent connection; default) or boto3",
    )
    p.add_argument(
        "--server-no-auth",
        action="store_true",
        help="server suite: serve with --no-auth and send unsigned requests (default: SigV4)",
    )
    p.add_argument(
        "--server-threads",
        type=_positive,
        default=8,
        help="server suite: request threads of the server (default 8)",
    )
    p.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        metavar="RUN.json",
        help="OLD.json: compare this run with an older one; OLD.json NEW.json: compare two runs without running",
    )
    p.add_argument(
        "--readme-section",
        type=Path,
        metavar="RESULTS.json",
        help="print the README performance section for a results file and exit",
    )
    return p


def _fail(message: str) -> ExitStatus:
    print(f"facepipe bench: error: {message}", file=sys.stderr)
    return ExitStatus.USAGE_ERROR


def pairs_file(given: Path | None, environ: Mapping[str, str]) -> tuple[Path | None, str]:
    """The accuracy suite's pairs file: ``--pairs``, else ``$FACEPIPE_PAIRS``, else None; and an
    error message when the one named is no file."""
    if given is not None:
        return given, "" if given.is_file() else f"--pairs {given}: no such file"
    named = environ.get(PAIRS_VARIABLE, "")
    if not named:
        return None, ""
    path = Path(named)
    return path, "" if path.is_file() else f"{PAIRS_VARIABLE}={named}: no such file"


def bench_main(argv: list[str]) -> int:
    """Run `facepipe bench` with ``argv`` (without the program name); returns the exit status.

    0: every suite ran (or was skipped with a reason); 1: a suite failed; 2: bad arguments or files
    (``--suite accuracy`` without a pairs file included).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.readme_section is not None:
        try:
            run = load_run(args.readme_section)
        except ValueError as exc:
            return _fail(str(exc))
        link = str(args.readme_section.parent / "summary.md")
        sys.stdout.write(readme_section(run, link))
        return ExitStatus.OK
    old_run: dict[str, Any] | None = None
    if args.compare:
        if len(args.compare) > 2:
            return _fail("--compare takes OLD.json or OLD.json NEW.json")
        try:
            runs = [load_run(p) for p in args.compare]
        except ValueError as exc:
            return _fail(str(exc))
        if len(runs) == 2:
            sys.stdout.write(markdown_compare(runs[0], runs[1]))
            return ExitStatus.OK
        old_run = runs[0]
    pairs, problem = pairs_file(args.pairs, os.environ)
    if problem:
        return _fail(problem)
    if pairs is None and args.suite and "accuracy" in args.suite:
        return _fail(f"the accuracy suite needs a labeled pairs CSV: --pairs PATH or {PAIRS_VARIABLE}=PATH")
    options = BenchOptions(
        suites=tuple(args.suite or ()),
        provider=args.provider,
        threads=args.threads,
        repeat=args.repeat,
        warmup=args.warmup,
        quick=args.quick,
        sizes=dict(args.sizes),
        pairs=pairs,
        out=args.out,
        seed=args.seed,
        server_client=args.server_client,
        server_auth=not args.server_no_auth,
        server_threads=args.server_threads,
        command=("facepipe", "bench", *argv),
    )
    finished = run_benchmarks(options, old_run)
    if old_run is not None:
        sys.stdout.write((finished.out_dir / "compare.md").read_text())
    return ExitStatus.FAILED if finished.failed else ExitStatus.OK
