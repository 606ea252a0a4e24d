"""One benchmark run: the suites asked for, then results.json, summary.md and PNG plots.

Writes OUT/results.json (schema in pipeline.bench.report), OUT/summary.md and PNG plots (the
plots need matplotlib, the ``bench`` extra; without it the run says so in one line).
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.bench.context import BenchContext
from pipeline.bench.machine import choose_provider, machine_info, ort_available_providers
from pipeline.bench.report import (
    SCHEMA,
    SCHEMA_VERSION,
    SuiteResult,
    markdown_compare,
    markdown_summary,
    write_run,
)

SUITES = ("pipeline", "search", "associate", "accuracy", "server")
"""Every suite, in the order a run executes them."""

NO_PAIRS_NOTE = "no labeled pairs file (--pairs PATH or FACEPIPE_PAIRS=PATH)"
"""Why the accuracy suite is skipped when a run has no pairs file."""


@dataclass(frozen=True)
class BenchOptions:
    """What a run measures and where it writes.

    suites: the suites to run, in order (empty: every suite in SUITES; the accuracy suite is then
    skipped, with NO_PAIRS_NOTE, when ``pairs`` is None). provider: "cpu", "cuda" or "auto".
    threads: intra-op threads for every library (0: each library's default). repeat: timed runs
    per figure (None: 5, or 3 with ``quick``); warmup: untimed runs before timing. sizes: explicit
    sizes per suite. pairs: labeled pairs CSV of the accuracy suite. out: output folder (None:
    benchmarks/results/<date>-<provider> under the current folder). seed: seed of the synthetic
    data. server_client, server_auth, server_threads: the server suite's client ("http" or
    "boto3"), SigV4 on or off, request threads. command: the command line recorded in results.json.
    """

    suites: tuple[str, ...] = ()
    provider: str = "auto"
    threads: int = 0
    repeat: int | None = None
    warmup: int = 1
    quick: bool = False
    sizes: dict[str, list[int]] = field(default_factory=dict)
    pairs: Path | None = None
    out: Path | None = None
    seed: int = 0
    server_client: str = "http"
    server_auth: bool = True
    server_threads: int = 8
    command: tuple[str, ...] = ("facepipe", "bench")


def _suite_runner(name: str) -> Callable[[BenchContext], SuiteResult]:
    """The function running suite ``name`` (imported lazily: each suite pulls in its own libraries)."""
    if name == "pipeline":
        from pipeline.bench.suite_pipeline import run_pipeline

        return run_pipeline
    if name == "search":
        from pipeline.bench.suite_search import run_search

        return run_search
    if name == "associate":
        from pipeline.bench.suite_associate import run_associate

        return run_associate
    if name == "accuracy":
        from pipeline.bench.suite_accuracy import run_accuracy

        return run_accuracy
    if name == "server":
        from pipeline.bench.suite_server import run_server

        return run_server
    raise ValueError(f"unknown suite {name!r}")


@dataclass(frozen=True)
class BenchRun:
    """A finished run: its document (as written to results.json) and the folder it was written to."""

    document: dict[str, Any]
    out_dir: Path

    @property
    def failed(self) -> bool:
        """True when a suite failed (a skipped suite is no failure)."""
        return any(s["status"] == "failed" for s in self.document["suites"].values())


def run_benchmarks(options: BenchOptions, old_run: dict[str, Any] | None = None) -> BenchRun:
    """Run the suites of ``options``; write results.json, summary.md, the plots and, against
    ``old_run``, compare.md; progress goes to stderr, one line per step."""
    from pipeline.config import Settings
    from pipeline.vision.providers import cuda_really_loads

    choice = choose_provider(options.provider, ort_available_providers(), cuda_really_loads)
    if choice.note:
        print(f"facepipe bench: note: {choice.note}", file=sys.stderr)
    created = datetime.now(timezone.utc)
    out: Path = options.out or Path("benchmarks") / "results" / f"{created:%Y-%m-%d}-{choice.used}"
    out.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env(provider=choice.used, threads=options.threads)
    pairs = options.pairs
    ctx = BenchContext(
        settings=settings,
        provider=choice,
        repeat=options.repeat or (3 if options.quick else 5),
        warmup=options.warmup,
        threads=options.threads,
        quick=options.quick,
        sizes=dict(options.sizes),
        pairs=pairs,
        out_dir=out,
        seed=options.seed,
        server_client=options.server_client,
        server_auth=options.server_auth,
        server_threads=options.server_threads,
    )
    names = list(dict.fromkeys(options.suites)) if options.suites else list(SUITES)
    explicit = bool(options.suites)
    suites: dict[str, SuiteResult] = {}
    for name in names:
        if name == "accuracy" and pairs is None:
            suites[name] = SuiteResult(name, "skipped", note=NO_PAIRS_NOTE)
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
    from pipeline.bench.plots import draw_plots, plots_unavailable

    run: dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": created.isoformat(timespec="seconds"),
        "command": list(options.command),
        "options": {
            "suites": names,
            "explicit_suites": explicit,
            "provider": options.provider,
            "threads": options.threads,
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
        (out / "compare.md").write_text(markdown_compare(old_run, run))
    print(f"facepipe bench: wrote {out / 'results.json'}, {out / 'summary.md'}", file=sys.stderr)
    return BenchRun(run, out)
