"""Benchmark results: JSON schema, markdown summary, run comparison, README section, provider choice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.bench.machine import choose_provider, confirm_provider, machine_info
from pipeline.bench.report import (
    FIGURE_KEYS,
    RUN_KEYS,
    SCHEMA_VERSION,
    Figure,
    SuiteResult,
    compare_runs,
    fmt,
    load_run,
    markdown_compare,
    markdown_summary,
    readme_section,
    validate_run,
    write_run,
)
from pipeline.bench.stats import spread


def make_run(embed_ms: list[float], rps: list[float]) -> dict[str, Any]:
    suite = SuiteResult("pipeline", note="tiny")
    suite.add(
        Figure(
            "embed.ms_per_face.b32",
            "embed, batch 32, per face",
            "ms",
            "lower",
            spread(embed_ms),
            {"batch": 32},
        )
    )
    server = SuiteResult("server")
    server.add(
        Figure(
            "http.ListFaces.requests_per_s.c16",
            "ListFaces through HTTP",
            "requests/s",
            "higher",
            spread(rps),
        )
    )
    return {
        "schema": "facepipe-bench",
        "schema_version": SCHEMA_VERSION,
        "created": "2026-01-02T03:04:05+00:00",
        "command": ["facepipe", "bench", "--quick"],
        "options": {},
        "machine": {
            "cpu": "Test CPU",
            "cpu_flags": ["avx2"],
            "logical_cores": 2,
            "usable_cores": 2,
            "gpus": [],
            "libraries": {},
        },
        "provider": {"requested": "auto", "used": "cpu", "note": "no CUDA"},
        "suites": {
            "pipeline": suite.to_json(),
            "server": server.to_json(),
            "accuracy": SuiteResult("accuracy", "skipped", note="no pairs file").to_json(),
        },
        "plots": [],
    }


def test_schema_keys_are_stable() -> None:
    # Changing any of these breaks --compare against committed results: bump SCHEMA_VERSION.
    assert SCHEMA_VERSION == 1
    assert RUN_KEYS == (
        "schema",
        "schema_version",
        "created",
        "command",
        "options",
        "machine",
        "provider",
        "suites",
        "plots",
    )
    assert FIGURE_KEYS == ("id", "label", "unit", "better", "params", "median", "q1", "q3", "min", "max", "n")
    run = make_run([10, 11, 12], [100, 110, 120])
    fig = run["suites"]["pipeline"]["figures"][0]
    assert set(fig) == set(FIGURE_KEYS)
    assert (fig["median"], fig["q1"], fig["q3"], fig["n"]) == (11.0, 10.5, 11.5, 3)
    assert validate_run(run) == []


def test_validate_run_names_problems() -> None:
    run = make_run([1, 2], [1, 2])
    del run["machine"]
    run["schema_version"] = 99
    run["suites"]["pipeline"]["status"] = "great"
    del run["suites"]["pipeline"]["figures"][0]["median"]
    problems = " | ".join(validate_run(run))
    assert "schema_version" in problems and "'machine'" in problems
    assert "status" in problems and "median" in problems
    assert validate_run([]) == ["a run must be a JSON object"]


def test_write_and_load_round_trip_with_non_finite_numbers(tmp_path: Path) -> None:
    run = make_run([1, 2], [3, 4])
    run["suites"]["pipeline"]["details"]["odd"] = float("nan")
    path = tmp_path / "results.json"
    write_run(run, path)
    text = path.read_text()
    assert "NaN" not in text
    loaded = load_run(path)
    assert loaded["suites"]["pipeline"]["details"]["odd"] is None
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "other"}')
    with pytest.raises(ValueError, match="not a facepipe benchmark run"):
        load_run(bad)
    with pytest.raises(ValueError, match="cannot read"):
        load_run(tmp_path / "missing.json")


def test_duplicate_figure_ids_are_refused() -> None:
    suite = SuiteResult("x")
    suite.add(Figure("a", "A", "ms", "lower", spread([1.0])))
    with pytest.raises(ValueError, match="duplicate"):
        suite.add(Figure("a", "A", "ms", "lower", spread([1.0])))


def test_markdown_summary_lists_machine_figures_and_skips() -> None:
    text = markdown_summary(make_run([10, 11, 12], [100, 110, 120]))
    assert "# facepipe benchmark, 2026-01-02" in text
    assert "Test CPU" in text and "used **cpu** (no CUDA)" in text
    assert "| embed, batch 32, per face | 11 ms | 10.5 - 11.5 | 10 - 12 | 3 |" in text
    assert "**skipped**: no pairs file" in text


def test_fmt_units() -> None:
    assert fmt(0.98765, "share") == "98.77%"
    assert fmt(1.5, "x") == "1.5x"
    assert fmt(12345.0, "ms") == "12,345 ms"
    assert fmt(None) == "-" and fmt(float("nan")) == "-"


def test_compare_reports_direction_and_noise() -> None:
    old = make_run([10, 11, 12], [100, 110, 120])
    faster = make_run([5, 5.5, 6], [100, 112, 121])  # embed clearly better, rps within noise
    changes = {c.id: c for c in compare_runs(old, faster)}
    assert changes["embed.ms_per_face.b32"].verdict == "better"
    assert changes["embed.ms_per_face.b32"].relative == pytest.approx(-0.5)
    assert changes["http.ListFaces.requests_per_s.c16"].verdict == "same"
    slower = make_run([10, 11, 12], [50, 55, 60])
    assert {c.id: c.verdict for c in compare_runs(old, slower)}[
        "http.ListFaces.requests_per_s.c16"
    ] == "worse"
    table = markdown_compare(old, faster)
    assert "| embed, batch 32, per face | 11 ms | 5.5 ms | -50.0% | better |" in table


def test_readme_section_shows_headlines_and_link() -> None:
    text = readme_section(make_run([10, 11, 12], [100, 110, 120]), "benchmarks/results/x/summary.md")
    assert text.startswith("## Performance")
    assert "[benchmarks/results/x/summary.md](benchmarks/results/x/summary.md)" in text
    assert "| ListFaces through HTTP | 110 requests/s | 105 - 115 |" in text
    assert "accuracy: no pairs file" in text


def test_provider_choice_and_cuda_fallback() -> None:
    cpu_only = ["CPUExecutionProvider"]
    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_provider("cpu", both, lambda: True).used == "cpu"
    assert choose_provider("cuda", both, lambda: True) == choose_provider("cuda", both, lambda: True)
    assert choose_provider("cuda", both, lambda: True).used == "cuda"
    assert choose_provider("auto", both, lambda: True).note == ""
    missing = choose_provider("cuda", cpu_only, lambda: True)
    assert (
        missing.used == "cpu"
        and "onnxruntime-gpu" in missing.note
        and missing.note.startswith("CUDA was requested")
    )
    broken = choose_provider("auto", both, lambda: False)
    assert broken.used == "cpu" and "does not load" in broken.note
    with pytest.raises(ValueError):
        choose_provider("tpu", both, lambda: True)


def test_confirm_provider_catches_a_session_that_fell_back() -> None:
    chosen = choose_provider("cuda", ["CUDAExecutionProvider"], lambda: True)
    fell_back = confirm_provider(chosen, ["CPUExecutionProvider"])
    assert fell_back.used == "cpu" and "did not load" in fell_back.note
    assert confirm_provider(chosen, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == chosen


def test_machine_info_is_json_and_names_the_cpu() -> None:
    info = machine_info()
    json.dumps(info)
    assert info["cpu"] and info["logical_cores"] >= 1 and "numpy" in info["libraries"]
