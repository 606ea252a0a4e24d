"""facepipe's benchmark framework: suites, statistics, plots, reports and machine facts.

``pipeline.bench.runner.run_benchmarks`` runs suites for a ``BenchOptions`` and returns the run
document (schema in ``pipeline.bench.report``); `facepipe bench` (``pipeline.cli.bench``) is its
command line.
"""
