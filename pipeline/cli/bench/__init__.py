"""`facepipe bench`: reproducible benchmark runs with plots and an accuracy report.

    facepipe bench [--suite NAME ...] [--provider cpu|cuda|auto] [--threads N] [--repeat N]
                   [--warmup N] [--quick] [--sizes SUITE=N,N ...] [--pairs PATH] [--out DIR]
                   [--server-client http|boto3] [--server-no-auth] [--server-threads N]
                   [--compare OLD.json [NEW.json]] [--readme-section RESULTS.json]

Writes DIR/results.json (schema in pipeline.cli.bench.report), DIR/summary.md and PNG plots
(the plots need matplotlib, the ``bench`` extra; without it the run says so in one line).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.cli.arguments import int_at_least
from pipeline.cli.bench.context import BenchContext
from pipeline.cli.bench.machine import choose_provider, machine_info, ort_available_providers
from pipeline.cli.bench.report import (
    SCHEMA,
    SCHEMA_VERSION,
    SuiteResult,
    load_run,
    markdown_compare,
    markdown_summary,
    readme_section,
    write_run,
)

SUITES = ("pipeline", "search", "associate", "accuracy", "server")
"""Every suite, in the order a run executes them."""

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_PAIRS = REPO_ROOT.parent / "shared" / "data" / "faces" / "pairs.csv"
"""Labeled pairs used by the accuracy suite when --pairs is not given (the development checkout's)."""


def _suite_runner(name: str) -> Callable[[BenchContext], SuiteResult]:
    """The function running suite ``name`` (imported lazily: each suite pulls in its own libraries)."""
    if name == "pipeline":
        from pipeline.cli.bench.suite_pipeline import run_pipeline

        return run_pipeline
    if name == "search":
        from pipeline.cli.bench.suite_search import run_search

        return run_search
    if name == "associate":
        from pipeline.cli.bench.suite_associate import run_associate

        return run_associate
    if name == "accuracy":
        from pipeline.cli.bench.suite_accuracy import run_accuracy

        return run_accuracy
    if name == "server":
        from pipeline.cli.bench.suite_server import run_server

        return run_server
    raise ValueError(f"unknown suite {name!r}")


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
        "--pairs", type=Path, help=f"labeled pairs CSV for the accuracy suite (default {DEFAULT_PAIRS})"
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


def _fail(message: str) -> int:
    print(f"facepipe bench: error: {message}", file=sys.stderr)
    return 2


def bench_main(argv: list[str]) -> int:
    """Run `facepipe bench` with ``argv`` (without the program name); returns the exit status.

    0: every suite ran (or was skipped with a reason); 1: a suite failed; 2: bad arguments or files.
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
        return 0
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
            return 0
        old_run = runs[0]
    if args.pairs is not None and not args.pairs.is_file():
        return _fail(f"--pairs {args.pairs}: no such file")
    return _run(args, argv, old_run)


def _run(args: argparse.Namespace, argv: list[str], old_run: dict[str, Any] | None) -> int:
    from pipeline.config import Settings
    from pipeline.vision.providers import cuda_really_loads

    choice = choose_provider(args.provider, ort_available_providers(), cuda_really_loads)
    if choice.note:
        print(f"facepipe bench: note: {choice.note}", file=sys.stderr)
    created = datetime.now(timezone.utc)
    out: Path = args.out or Path("benchmarks") / "results" / f"{created:%Y-%m-%d}-{choice.used}"
    out.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env(provider=choice.used, threads=args.threads)
    pairs = args.pairs or (DEFAULT_PAIRS if DEFAULT_PAIRS.is_file() else None)
    ctx = BenchContext(
        settings=settings,
        provider=choice,
        repeat=args.repeat or (3 if args.quick else 5),
        warmup=args.warmup,
        threads=args.threads,
        quick=args.quick,
        sizes=dict(args.sizes),
        pairs=pairs,
        out_dir=out,
        seed=args.seed,
        server_client=args.server_client,
        server_auth=not args.server_no_auth,
        server_threads=args.server_threads,
    )
    names = list(dict.fromkeys(args.suite)) if args.suite else list(SUITES)
    explicit = bool(args.suite)
    suites: dict[str, SuiteResult] = {}
    for name in names:
        if name == "accuracy" and pairs is None:
            suites[name] = SuiteResult(
                name,
                "skipped",
                note=f"no labeled pairs file (--pairs PATH; default {DEFAULT_PAIRS} is absent)",
            )
            continue
        print(f"facepipe bench: running {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            result = _suite_runner(name)(ctx)
        except Exception as exc:
            result = SuiteResult(name, "failed", note=f"{type(exc).__name__}: {exc}")
            result.details["traceback"] = traceback.format_exc()
            print(f"facepipe bench: {name} failed: {result.note}", file=sys.stderr)
        result.seconds = time.perf_counter() - start
        suites[name] = result
        print(f"facepipe bench: {name} {result.status} in {result.seconds:.1f} s", file=sys.stderr)
    from pipeline.cli.bench.plots import draw_plots, plots_unavailable

    run: dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": created.isoformat(timespec="seconds"),
        "command": ["facepipe", "bench", *argv],
        "options": {
            "suites": names,
            "explicit_suites": explicit,
            "provider": args.provider,
            "threads": args.threads,
            "repeat": ctx.repeat,
            "warmup": ctx.warmup,
            "quick": ctx.quick,
            "sizes": ctx.sizes,
            "pairs": str(pairs) if pairs else None,
            "seed": ctx.seed,
            "server_client": ctx.server_client,
            "server_auth": ctx.server_auth,
            "server_threads": ctx.server_threads,
        },
        "machine": machine_info(),
        "provider": ctx.provider.to_json(),
        "suites": {n: s.to_json() for n, s in suites.items()},
        "plots": [],
    }
    plots_note = plots_unavailable()
    if plots_note is None:
        run["plots"] = draw_plots(run, out)
    else:
        print(f"facepipe bench: {plots_note}", file=sys.stderr)
    write_run(run, out / "results.json")
    (out / "summary.md").write_text(markdown_summary(run, plots_note or ""))
    if old_run is not None:
        text = markdown_compare(old_run, run)
        (out / "compare.md").write_text(text)
        sys.stdout.write(text)
    print(f"facepipe bench: wrote {out / 'results.json'}, {out / 'summary.md'}", file=sys.stderr)
    return 1 if any(s.status == "failed" for s in suites.values()) else 0
