"""PNG plots of a run (matplotlib, Agg backend): one or two per suite, drawn from figures and details.

matplotlib is optional (the ``bench`` extra): :func:`draw_plots` imports it when called, and
:func:`plots_unavailable` says in one line why plots cannot be drawn here and how to get them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure as MplFigure

PLOTS_INSTALL = "pip install 'facepipe[bench]'"
"""How to install what the plots need."""


def plots_unavailable() -> str | None:
    """None when matplotlib imports; else one line saying the plots are not drawn and how to get them."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f"plots not drawn: matplotlib is not installed ({PLOTS_INSTALL} adds it)"
    return None


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (imported on first use: matplotlib is optional)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def _figures(suite: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    return [f for f in suite["figures"] if f["id"].startswith(prefix)]


def _errorbar(ax: Axes, xs: list[float], figs: list[dict[str, Any]], label: str, fmt: str = "o-") -> None:
    """Medians with whiskers from the first to the third quartile."""
    med = [f["median"] for f in figs]
    lo = [f["median"] - f["q1"] for f in figs]
    hi = [f["q3"] - f["median"] for f in figs]
    ax.errorbar(xs, med, yerr=[lo, hi], fmt=fmt, capsize=3, label=label)


def _save(fig: MplFigure, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    _pyplot().close(fig)
    return name


def plot_pipeline(suite: dict[str, Any], out: Path) -> list[str]:
    """Embedding ms/face by batch size (facepipe and OpenCV), detection ms by image size."""
    names: list[str] = []
    embed = sorted(_figures(suite, "embed.ms_per_face.b"), key=lambda f: f["params"]["batch"])
    peer = sorted(_figures(suite, "embed.opencv_ms_per_face.b"), key=lambda f: f["params"]["batch"])
    detect = sorted(_figures(suite, "detect.ms."), key=lambda f: f["params"]["size"])
    detect_peer = sorted(_figures(suite, "detect.opencv_ms."), key=lambda f: f["params"]["size"])
    if embed or detect:
        fig, axes = _pyplot().subplots(1, 2, figsize=(10, 4))
        if embed:
            _errorbar(axes[0], [f["params"]["batch"] for f in embed], embed, "facepipe (ONNX Runtime)")
        if peer:
            _errorbar(axes[0], [f["params"]["batch"] for f in peer], peer, "OpenCV DNN", "s--")
        axes[0].set(xscale="log", xlabel="batch size (faces)", ylabel="ms per face", title="Embedding")
        axes[0].set_ylim(bottom=0)
        if detect:
            _errorbar(axes[1], [f["params"]["size"] for f in detect], detect, "facepipe (ONNX Runtime)")
        if detect_peer:
            _errorbar(
                axes[1],
                [f["params"]["size"] for f in detect_peer],
                detect_peer,
                "OpenCV FaceDetectorYN",
                "s--",
            )
        axes[1].set(xlabel="detector input size (px, square)", ylabel="ms per image", title="Detection")
        axes[1].set_ylim(bottom=0)
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.legend()
        names.append(_save(fig, out, "pipeline.png"))
    return names


def plot_search(suite: dict[str, Any], out: Path) -> list[str]:
    """p50 latency by collection size for each index, and recall@10 / above-threshold recall."""
    curves: dict[str, list[list[float]]] = suite["details"].get("p50_ms_by_size", {})
    if not any(curves.values()):
        return []
    fig, axes = _pyplot().subplots(1, 2, figsize=(10, 4))
    labels = {
        "exact": "facepipe exact",
        "ann": "facepipe ANN (PQ scan + exact re-rank)",
        "store": "facepipe store (its index at each size)",
        "faiss_flat": "faiss IndexFlatIP",
    }
    for name, points in curves.items():
        if points:
            axes[0].plot([p[0] for p in points], [p[1] for p in points], "o-", label=labels.get(name, name))
    axes[0].set(xscale="log", yscale="log", xlabel="faces in collection", ylabel="p50 ms per query")
    axes[0].set_title("Search latency (one query at a time)")
    recall = _figures(suite, "ann.recall")
    kinds = sorted({f["id"].split(".")[1] for f in recall})
    for kind in kinds:
        figs = sorted(
            [f for f in recall if f["id"].split(".")[1] == kind], key=lambda f: f["params"]["faces"]
        )
        axes[1].plot([f["params"]["faces"] for f in figs], [f["median"] for f in figs], "o-", label=kind)
    axes[1].set(xscale="log", xlabel="faces in collection", ylabel="recall", title="ANN recall vs exact")
    axes[1].set_ylim(top=1.005)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    return [_save(fig, out, "search.png")]


def plot_associate(suite: dict[str, Any], out: Path) -> list[str]:
    """AssociateFaces calls per second by the number of faces the user already has."""
    figs = sorted(_figures(suite, "calls_per_s.u"), key=lambda f: f["params"]["user_faces"])
    if not figs:
        return []
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    _errorbar(ax, [f["params"]["user_faces"] for f in figs], figs, "AssociateFaces")
    ax.set(xlabel="faces already associated with the user", ylabel="calls per second", title="AssociateFaces")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    return [_save(fig, out, "associate.png")]


def plot_accuracy(suite: dict[str, Any], out: Path) -> list[str]:
    """ROC (log false accept rate) with the default thresholds marked, and the reliability diagram."""
    d = suite["details"]
    names: list[str] = []
    if d.get("roc"):
        fig, axes = _pyplot().subplots(1, 2, figsize=(10, 4))
        far, tar = d["roc"]["far"], d["roc"]["tar"]
        floor = 1.0 / max(1, d["roc"]["impostor"])
        axes[0].plot([max(x, floor / 2) for x in far], tar, "-", label="ROC")
        for point in d.get("thresholds", []):
            axes[0].plot(
                max(point["far"], floor / 2),
                1 - point["frr"],
                "o",
                label=f"Similarity {point['threshold']:g}",
            )
        axes[0].set(
            xscale="log", xlabel="false accept rate", ylabel="true accept rate", title="Verification ROC"
        )
        axes[0].grid(alpha=0.3)
        axes[0].legend(loc="lower right")
        gen, imp = d.get("similarity_genuine", []), d.get("similarity_impostor", [])
        bins = [i * 2.5 for i in range(41)]
        axes[1].hist(imp, bins=bins, alpha=0.6, label="different people")
        axes[1].hist(gen, bins=bins, alpha=0.6, label="same person")
        for point in d.get("thresholds", []):
            axes[1].axvline(point["threshold"], color="k", ls=":", lw=1)
        axes[1].set(xlabel="Similarity (0-100)", ylabel="pairs", title="Calibrated similarity")
        axes[1].legend()
        names.append(_save(fig, out, "accuracy_roc.png"))
    if d.get("reliability"):
        fig, ax = _pyplot().subplots(figsize=(5, 5))
        rows = d["reliability"]
        ax.plot([0, 1], [0, 1], "k:", label="perfectly calibrated")
        ax.plot(
            [r["mean_confidence"] / 100 for r in rows],
            [r["genuine_share"] for r in rows],
            "o-",
            label="facepipe",
        )
        for r in rows:
            ax.annotate(str(r["count"]), (r["mean_confidence"] / 100, r["genuine_share"]), fontsize=7)
        ax.set(
            xlabel="mean Similarity / 100 in bin",
            ylabel="share of same-person pairs",
            title=f"Reliability (ECE {d.get('ece', 0):.3f})",
            xlim=(0, 1),
            ylim=(0, 1),
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
        names.append(_save(fig, out, "accuracy_reliability.png"))
    return names


def plot_server(suite: dict[str, Any], out: Path) -> list[str]:
    """Requests per second through HTTP and in process by concurrent clients, one panel per operation."""
    operations = list(dict.fromkeys(f["params"]["operation"] for f in _figures(suite, "http.")))
    if not operations:
        return []
    fig, axes = _pyplot().subplots(1, len(operations), figsize=(4.2 * len(operations), 3.6), squeeze=False)
    for ax, operation in zip(axes[0], operations, strict=True):
        for mode, label, fmt in (("http", "HTTP", "o-"), ("in_process", "in process", "s--")):
            figs = sorted(
                _figures(suite, f"{mode}.{operation}.requests_per_s.c"), key=lambda f: f["params"]["clients"]
            )
            if figs:
                _errorbar(ax, [f["params"]["clients"] for f in figs], figs, label, fmt)
        ax.set(xscale="log", xlabel="concurrent clients", ylabel="requests per second", title=operation)
        ax.set_xscale("log", base=2)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    return [_save(fig, out, "server.png")]


PLOTTERS: dict[str, Callable[[dict[str, Any], Path], list[str]]] = {
    "pipeline": plot_pipeline,
    "search": plot_search,
    "associate": plot_associate,
    "accuracy": plot_accuracy,
    "server": plot_server,
}


def draw_plots(run: dict[str, Any], out: Path) -> list[str]:
    """Draw every plot the run's suites support into ``out``; file names relative to ``out``.

    Each suite's ``details["plots"]`` lists its own files (the markdown summary links them).
    Needs matplotlib (check :func:`plots_unavailable` first).
    """
    every: list[str] = []
    for name, suite in run["suites"].items():
        if suite["status"] != "ok" or name not in PLOTTERS:
            continue
        files = PLOTTERS[name](suite, out)
        suite["details"]["plots"] = files
        every += files
    return every
