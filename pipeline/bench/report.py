"""Benchmark results: the JSON document (schema), the markdown summary, run-to-run comparison, and the
README performance section.

A run is one JSON object::

    {"schema": "facepipe-bench", "schema_version": 1, "created": ISO-8601 UTC, "command": [...],
     "options": {...}, "machine": {...}, "provider": {"requested", "used", "note"},
     "suites": {name: {"status": "ok"|"skipped"|"failed", "note": str, "seconds": float,
                       "figures": [Figure...], "details": {...}}},
     "plots": [relative PNG paths]}

A figure is ``{"id", "label", "unit", "better": "lower"|"higher", "params": {...}, "median", "q1",
"q3", "min", "max", "n"}``: the median of ``n`` repeated measurements with its quartiles and
extremes. Peers measured in the same run appear as figures with unit "x" (peer time / our time).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.bench.stats import Spread

SCHEMA = "facepipe-bench"
SCHEMA_VERSION = 1

FIGURE_KEYS = ("id", "label", "unit", "better", "params", "median", "q1", "q3", "min", "max", "n")
SUITE_KEYS = ("status", "note", "seconds", "figures", "details")
RUN_KEYS = (
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


@dataclass(frozen=True)
class Figure:
    """One measured quantity: its spread over repeats, unit, and which direction is better."""

    id: str
    label: str
    unit: str
    better: str
    spread: Spread
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "unit": self.unit,
            "better": self.better,
            "params": dict(self.params),
            **self.spread.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Figure:
        s = Spread(
            float(data["median"]),
            float(data["q1"]),
            float(data["q3"]),
            float(data["min"]),
            float(data["max"]),
            int(data["n"]),
        )
        return cls(data["id"], data["label"], data["unit"], data["better"], s, dict(data.get("params", {})))


def single(value: float) -> Spread:
    """The spread of a figure measured once (accuracy rates, recall on a fixed query set)."""
    return Spread(value, value, value, value, value, 1)


@dataclass
class SuiteResult:
    """What one suite produced: figures, free-form details for plots, status and a note for people."""

    name: str
    status: str = "ok"
    note: str = ""
    seconds: float = 0.0
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: Figure) -> Figure:
        if any(f.id == figure.id for f in self.figures):
            raise ValueError(f"duplicate figure id {figure.id!r}")
        self.figures.append(figure)
        return figure

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "note": self.note,
            "seconds": round(self.seconds, 3),
            "figures": [f.to_json() for f in self.figures],
            "details": self.details,
        }


def validate_run(data: Any) -> list[str]:
    """Everything wrong with a run document against this schema version (empty list: valid)."""
    problems: list[str] = []
    if not isinstance(data, dict):
        return ["a run must be a JSON object"]
    if data.get("schema") != SCHEMA:
        problems.append(f"schema must be {SCHEMA!r}")
    if data.get("schema_version") != SCHEMA_VERSION:
        problems.append(f"schema_version must be {SCHEMA_VERSION}, got {data.get('schema_version')!r}")
    problems += [f"missing key {k!r}" for k in RUN_KEYS if k not in data]
    suites = data.get("suites", {})
    if not isinstance(suites, dict):
        return [*problems, "suites must be an object"]
    for name, suite in suites.items():
        if not isinstance(suite, dict):
            problems.append(f"suite {name!r} must be an object")
            continue
        problems += [f"suite {name!r}: missing key {k!r}" for k in SUITE_KEYS if k not in suite]
        if suite.get("status") not in ("ok", "skipped", "failed"):
            problems.append(f"suite {name!r}: status must be ok, skipped or failed")
        for fig in suite.get("figures", []):
            missing = [k for k in FIGURE_KEYS if k not in fig]
            if missing:
                problems.append(f"figure {fig.get('id')!r}: missing {missing}")
            elif fig["better"] not in ("lower", "higher"):
                problems.append(f"figure {fig['id']!r}: better must be lower or higher")
    return problems


def load_run(path: Path) -> dict[str, Any]:
    """Read a results JSON file; ValueError naming the file when it is not a valid run."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read benchmark results {path}: {exc}") from exc
    problems = validate_run(data)
    if problems:
        raise ValueError(f"{path} is not a facepipe benchmark run: {'; '.join(problems[:5])}")
    return dict(data)


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats (NaN, inf) by None so the file stays strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_run(run: dict[str, Any], path: Path) -> None:
    """Write a run as indented, strict JSON (non-finite numbers become null)."""
    path.write_text(json.dumps(_json_safe(run), indent=1, sort_keys=False, allow_nan=False) + "\n")


def fmt(value: float | None, unit: str = "") -> str:
    """A number with 3 significant digits and its unit ('share' as a percentage); '-' when missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if unit == "share":
        return f"{value * 100:.2f}%"
    if value == 0:
        text = "0"
    elif abs(value) >= 1000:
        text = f"{value:,.0f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".rstrip() if unit and unit != "x" else (f"{text}x" if unit == "x" else text)


def _figure_rows(figures: list[dict[str, Any]]) -> list[str]:
    rows = ["| figure | median | IQR | min - max | runs |", "|---|---:|---:|---:|---:|"]
    for f in figures:
        unit = f["unit"]
        iqr = f"{fmt(f['q1'])} - {fmt(f['q3'])}" if f["n"] > 1 else ""
        span = f"{fmt(f['min'])} - {fmt(f['max'])}" if f["n"] > 1 else ""
        rows.append(f"| {f['label']} | {fmt(f['median'], unit)} | {iqr} | {span} | {f['n']} |")
    return rows


def markdown_summary(run: dict[str, Any], plots_note: str = "") -> str:
    """The human summary of a run: machine, provider, one table per suite, notes and plots.

    plots_note: one line saying why the run has no plots (empty when they were drawn).
    """
    m = run["machine"]
    p = run["provider"]
    gpu = ", ".join(g["name"] for g in m.get("gpus", [])) or "none"
    libs = ", ".join(f"{k} {v}" for k, v in m.get("libraries", {}).items())
    lines = [
        f"# facepipe benchmark, {run['created'][:10]}",
        "",
        f"- CPU: {m['cpu']} ({m['usable_cores']} usable of {m['logical_cores']} logical cores; "
        f"{' '.join(m.get('cpu_flags', [])) or 'no AVX2'})",
        f"- GPU: {gpu}",
        f"- Provider: requested {p['requested']}, used **{p['used']}**"
        + (f" ({p['note']})" if p["note"] else ""),
        f"- Options: `{' '.join(run['command'])}`",
        f"- Libraries: {libs}",
        "",
        "Each figure is the median of repeated runs, with its interquartile range (IQR) and extremes. "
        "Ratios (unit x) compare with a peer measured in the same runs: peer time / facepipe time, "
        "so above 1x facepipe is faster.",
    ]
    if plots_note:
        lines += ["", f"Note: {plots_note}."]
    for name, suite in run["suites"].items():
        lines += ["", f"## {name}", ""]
        if suite["status"] != "ok":
            lines.append(f"**{suite['status']}**: {suite['note']}")
            continue
        if suite["note"]:
            lines += [suite["note"], ""]
        if suite["figures"]:
            lines += _figure_rows(suite["figures"])
        for plot in suite["details"].get("plots", []):
            lines += ["", f"![{name}]({plot})"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Change:
    """A figure present in two runs: old and new medians, relative change, and its verdict."""

    id: str
    label: str
    unit: str
    old: float
    new: float
    relative: float | None
    verdict: str


def compare_runs(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Figures both runs measured, matched by id and params: the change of each median.

    verdict is 'better' or 'worse' when the new median lies outside the old run's min-max range
    (and the other run's range does not contain the old median), in the figure's better direction;
    otherwise 'same' (within noise).
    """
    old_figs = {(s, f["id"]): f for s, suite in old["suites"].items() for f in suite["figures"]}
    changes: list[Change] = []
    for s, suite in new["suites"].items():
        for f in suite["figures"]:
            before = old_figs.get((s, f["id"]))
            if before is None or before["unit"] != f["unit"]:
                continue
            o, n = float(before["median"]), float(f["median"])
            rel = (n - o) / abs(o) if o != 0 else None
            separated = (n > before["max"] and o < f["min"]) or (n < before["min"] and o > f["max"])
            if not separated or n == o:
                verdict = "same"
            else:
                up = n > o
                verdict = "better" if up == (f["better"] == "higher") else "worse"
            changes.append(Change(f["id"], f["label"], f["unit"], o, n, rel, verdict))
    return changes


def markdown_compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    """A markdown table of every shared figure's change from ``old`` to ``new``."""
    changes = compare_runs(old, new)
    lines = [
        f"# Change from {old['created'][:19]} to {new['created'][:19]}",
        "",
        f"Old: {old['machine']['cpu']}, provider {old['provider']['used']}. "
        f"New: {new['machine']['cpu']}, provider {new['provider']['used']}.",
        "",
        "| figure | old | new | change | verdict |",
        "|---|---:|---:|---:|---|",
    ]
    for c in changes:
        rel = f"{c.relative * 100:+.1f}%" if c.relative is not None else "-"
        lines.append(f"| {c.label} | {fmt(c.old, c.unit)} | {fmt(c.new, c.unit)} | {rel} | {c.verdict} |")
    if not changes:
        lines.append("| (no figure in common) | | | | |")
    return "\n".join(lines) + "\n"


HEADLINE_IDS = (
    ("pipeline", "e2e.images_per_s"),
    ("pipeline", "embed.ms_per_face.b32"),
    ("pipeline", "embed.speedup_vs_opencv.b32"),
    ("pipeline", "detect.ms.640"),
    ("pipeline", "detect.speedup_vs_opencv.640"),
    ("search", "store.p50_ms.100000"),
    ("search", "store.p50_ms.1000000"),
    ("search", "store.recall_above_threshold.1000000"),
    ("search", "ann.recall_at_10.1000000"),
    ("search", "ann.memory_bytes_per_face.1000000"),
    ("search", "store.disk_bytes_per_face.1000000"),
    ("associate", "calls_per_s.u10"),
    ("accuracy", "tar_at_far.0.001"),
    ("accuracy", "accuracy_at.80"),
    ("server", "http.ListFaces.requests_per_s.c16"),
    ("server", "http.SearchUsers.requests_per_s.c16"),
    ("server", "http.SearchFacesByImage.ratio_to_in_process.c1"),
)
"""The figures the README's performance section shows, when a run has them."""


def readme_section(run: dict[str, Any], results_link: str) -> str:
    """The README performance section: headline figures of a run and a link to its full summary."""
    m = run["machine"]
    p = run["provider"]
    lines = [
        "## Performance",
        "",
        f"Measured by `facepipe bench` on {m['cpu']} ({m['usable_cores']} cores), provider "
        f"{p['used']}, {run['created'][:10]}. Full report, plots and JSON: [{results_link}]({results_link}).",
        "",
        "| figure | median | spread (IQR) |",
        "|---|---:|---:|",
    ]
    found = 0
    for suite_name, fig_id in HEADLINE_IDS:
        suite = run["suites"].get(suite_name)
        if not suite or suite["status"] != "ok":
            continue
        for f in suite["figures"]:
            if f["id"] == fig_id:
                iqr = f"{fmt(f['q1'])} - {fmt(f['q3'])}" if f["n"] > 1 else "single measurement"
                lines.append(f"| {f['label']} | {fmt(f['median'], f['unit'])} | {iqr} |")
                found += 1
    if found == 0:
        lines.append("| (this run has none of the headline figures) | | |")
    notes = [f"- {name}: {s['note']}" for name, s in run["suites"].items() if s["note"]]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"
