"""Fit the cosine -> Similarity (0-100) calibration on every labeled pair and publish its error rates.

Every image of labels.csv is embedded once with the real engine: photos (celeb5/, photos/) are
decoded, detected, aligned and embedded (largest face); aligned/ crops are already 112x112 on
the ArcFace template and are embedded directly. Every pair of images is then scored (a dot
product): pairs of one identity are genuine, all others are pairs of strangers (about 329,000
from 825 images), so false-accept rates down to 1e-5 are measured rather than extrapolated.

The map is pipeline.vision.calibration.SimilarityMap: piecewise linear in the cosine, through
(-1, 0), one anchor per entry of ANCHOR_RATES and (1, 100). Each anchor is the lowest cosine
(rounded up to 3 decimals) at which the measured share of stranger pairs scoring at least that
cosine is at most the anchor's rate.

Error rates come with 95% intervals: Wilson score intervals (pairs taken as independent) and a
bootstrap by identity (identities drawn with replacement, each pair weighted by how often its
identities were drawn), which is the honest one: pairs of the same two people are not
independent, and 37 identities make few independent draws.

Usage:  python scripts/calibrate.py [--data ../shared/data/faces] [--flip] [--write]
--write stores the anchors in models/<pack>.json (``calibration``; with --flip ``calibration_flip``),
the tables in models/calibration.md (calibration-flip.md) and the reliability plot under
benchmarks/results/<date>-calibration/; for a pack other than the default, in
models/calibration-<pack>.md and benchmarks/results/<date>-calibration-<pack>/.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import Settings  # noqa: E402
from pipeline.errors import RekognitionError  # noqa: E402
from pipeline.vision.align import CROP_SIZE  # noqa: E402
from pipeline.vision.calibration import SimilarityMap  # noqa: E402
from pipeline.vision.engine import FaceEngine, get_engine  # noqa: E402
from pipeline.vision.packs import manifest_path  # noqa: E402

F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]

ANCHOR_RATES: tuple[tuple[float, float], ...] = (
    (2.0, 0.99),
    (5.0, 0.9),
    (10.0, 0.5),
    (25.0, 0.1),
    (50.0, 1e-2),
    (80.0, 1e-3),
    (90.0, 3e-4),
    (95.0, 2e-4),
    (99.0, 1e-4),
)
"""(Similarity, false-accept rate): each anchor sits where that share of stranger pairs scores higher.
80 is Rekognition's default (1 in 1,000 strangers); 99, AWS's strict advice, 1 in 10,000: strict on
these look-alike celebrities (no pair of strangers among the web photos reaches it) while still
passing most genuine pairs (above every stranger measured, it would reject 39% of them here)."""

TABLE_LEVELS = (10, 25, 50, 60, 70, 75, 80, 85, 90, 95, 99)
"""Similarity thresholds whose error rates are published."""

SUBSETS = ("aligned", "celeb5", "photos", "cross")
"""Pair groups reported: pairs within each folder of the data, and strangers from two folders."""

Z95 = 1.959963984540054
BOOTSTRAP_DRAWS = 1000


@dataclass
class Pairs:
    """Every pair of labeled images: cosine (-1 where an image gave no face), same identity,
    the pair's subset (its folder, or 'cross'), and the identity index of each side."""

    cosine: F64
    same: BOOL
    subset: npt.NDArray[np.str_]
    ident_a: npt.NDArray[np.intp]
    ident_b: npt.NDArray[np.intp]
    identities: int


def read_labels(data: Path) -> list[dict[str, str]]:
    """Rows of labels.csv: path (relative to data), identity, subset."""
    with (data / "labels.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def embed_all(engine: FaceEngine, data: Path, paths: list[str]) -> tuple[npt.NDArray[np.float32], BOOL]:
    """Unit embedding per path (largest face for photos; aligned crops as they are) and a found mask."""
    vectors = np.zeros((len(paths), engine.embedding_dim), np.float32)
    found = np.zeros(len(paths), bool)
    crops, crop_rows = [], []
    for row, rel in enumerate(paths):
        raw = (data / rel).read_bytes()
        if rel.startswith("aligned/"):
            crop = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
            if crop is not None and crop.shape[:2] == (CROP_SIZE, CROP_SIZE):
                crops.append(crop)
                crop_rows.append(row)
                continue
        try:
            faces = engine.analyze(engine.decode(raw, max_bytes=len(raw)), max_faces=1)
        except RekognitionError as exc:
            print(f"  skipped {rel}: {exc.code}: {exc.message}", file=sys.stderr)
            faces = []
        if faces and faces[0].embedding is not None:
            vectors[row] = faces[0].embedding
            found[row] = True
    if crops:
        vectors[crop_rows] = engine.embed_aligned(np.stack(crops))
        found[crop_rows] = True
    return vectors, found


def cached_embeddings(
    engine: FaceEngine, data: Path, paths: list[str], flip: bool, cache_dir: Path | None
) -> tuple[npt.NDArray[np.float32], BOOL]:
    """embed_all(), kept in ``cache_dir`` (outside the repository), keyed by the file list, the mode
    and the vector the engine gives a fixed probe crop (so another embedder graph or precision
    never reads stale vectors)."""
    if cache_dir is None:
        return embed_all(engine, data, paths)
    probe = np.random.default_rng(0).integers(0, 256, (1, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    fingerprint = np.round(engine.embed_aligned(probe)[0], 4).tobytes().hex()
    key = hashlib.sha256(
        json.dumps([engine.model_version, fingerprint, flip, str(data.resolve()), paths]).encode()
    ).hexdigest()[:16]
    path = cache_dir / f"facepipe-calibration-{key}.npz"
    if path.is_file():
        with np.load(path) as saved:
            return saved["vectors"], saved["found"]
    vectors, found = embed_all(engine, data, paths)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(path, vectors=vectors, found=found)
    return vectors, found


def all_pairs(labels: list[dict[str, str]], vectors: npt.NDArray[np.float32], found: BOOL) -> Pairs:
    """Every unordered pair of distinct images."""
    names = sorted({r["identity"] for r in labels})
    ident = np.asarray([names.index(r["identity"]) for r in labels], np.intp)
    subset = np.asarray([r["subset"] for r in labels])
    a, b = np.triu_indices(len(labels), 1)
    cosine = np.einsum("ij,ij->i", vectors[a], vectors[b]).astype(np.float64)
    cosine[~(found[a] & found[b])] = -1.0
    kind = np.where(subset[a] == subset[b], subset[a], "cross")
    return Pairs(cosine, ident[a] == ident[b], kind, ident[a], ident[b], len(names))


def anchor_cosine(stranger_cosines: F64, rate: float) -> float:
    """Lowest cosine of 3 decimals with at most ``rate`` of the strangers at or above it (the rounding
    leaves a margin of up to 0.001 against small numeric changes of the embedder)."""
    ranked = np.sort(stranger_cosines)[::-1]
    allowed = math.floor(rate * len(ranked) + 1e-9)
    if allowed >= len(ranked):
        return -1.0
    # strictly above the (allowed+1)-th highest stranger: at most `allowed` of them at or above
    return math.floor(float(ranked[allowed]) * 1e3 + 1.0) / 1e3


def fit(pairs: Pairs) -> SimilarityMap:
    """The anchors of ANCHOR_RATES on the measured stranger pairs."""
    strangers = pairs.cosine[~pairs.same]
    return SimilarityMap.from_inner_anchors(
        {level: anchor_cosine(strangers, rate) for level, rate in ANCHOR_RATES}
    )


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a rate k/n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def identity_draws(identities: int, draws: int, seed: int = 0) -> npt.NDArray[np.float64]:
    """(draws, identities) multiplicities of identities drawn with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(identities, np.full(identities, 1.0 / identities), size=draws).astype(np.float64)


def bootstrap_rates(
    pairs: Pairs, mask: BOOL, cosines: list[float], draws: npt.NDArray[np.float64]
) -> tuple[F64, F64]:
    """(draws, thresholds) false-accept and false-reject rates of ``cosine >= threshold`` per
    identity draw, over the pairs in ``mask`` (NaN where a draw has no such pair)."""
    thresholds = np.asarray(cosines)
    far = np.full((len(draws), len(thresholds)), np.nan)
    frr = np.full_like(far, np.nan)
    for side, out, accepted in ((False, far, True), (True, frr, False)):
        sel = mask & (pairs.same == side)
        cos, ia, ib = pairs.cosine[sel], pairs.ident_a[sel], pairs.ident_b[sel]
        if cos.size == 0:
            continue
        order = np.argsort(cos)
        cos, ia, ib = cos[order], ia[order], ib[order]
        start = np.searchsorted(cos, thresholds, side="left")  # pairs at index >= start are accepted
        for d, m in enumerate(draws):
            w = m[ia] * m[ib] if not side else m[ia]
            total = w.sum()
            if total == 0:
                continue
            tail = np.r_[np.cumsum(w[::-1])[::-1], 0.0]
            share_accepted = tail[start] / total
            out[d] = share_accepted if accepted else 1.0 - share_accepted
    return far, frr


def bootstrap_anchor_cosines(
    pairs: Pairs, draws: npt.NDArray[np.float64]
) -> dict[float, tuple[float, float]]:
    """95% interval of each anchor's cosine over identity draws (weighted stranger quantiles)."""
    sel = ~pairs.same
    cos, ia, ib = pairs.cosine[sel], pairs.ident_a[sel], pairs.ident_b[sel]
    order = np.argsort(-cos)
    cos, ia, ib = cos[order], ia[order], ib[order]
    found: dict[float, list[float]] = {level: [] for level, _ in ANCHOR_RATES}
    for m in draws:
        w = m[ia] * m[ib]
        cum = np.cumsum(w) / w.sum()
        for level, rate in ANCHOR_RATES:
            found[level].append(
                float(cos[np.searchsorted(cum, rate, side="right")])
                if rate > 0
                else float(cos[np.argmax(w > 0)])
            )
    return {
        level: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for level, v in found.items()
    }


def held_out_check(pairs: Pairs, splits: int = 50, seed: int = 0) -> dict[float, tuple[float, float, float]]:
    """The promise tested on people the fit never saw: identities split in halves at random, anchors
    fitted on the strangers of one half, measured on the strangers of the other. Per anchor level:
    (10th percentile, median, 90th percentile) of the held-out false-accept rate over the splits."""
    rng = np.random.default_rng(seed)
    measured: dict[float, list[float]] = {level: [] for level, _ in ANCHOR_RATES}
    strangers = ~pairs.same
    for _ in range(splits):
        half = rng.permutation(pairs.identities) < pairs.identities // 2
        for fit_side in (True, False):
            fit_mask = strangers & (half[pairs.ident_a] == fit_side) & (half[pairs.ident_b] == fit_side)
            test_mask = strangers & (half[pairs.ident_a] != fit_side) & (half[pairs.ident_b] != fit_side)
            fitted, tested = pairs.cosine[fit_mask], pairs.cosine[test_mask]
            for level, rate in ANCHOR_RATES:
                measured[level].append(float((tested >= anchor_cosine(fitted, rate)).mean()))
    return {
        level: (float(np.percentile(v, 10)), float(np.median(v)), float(np.percentile(v, 90)))
        for level, v in measured.items()
    }


def _pct(rate: float) -> str:
    if rate == 0:
        return "0"
    if rate < 1e-4:
        return f"{rate:.5%}"
    return f"{rate:.3%}" if rate < 0.01 else f"{rate:.2%}"


def _interval(low: float, high: float) -> str:
    return f"{_pct(low)}-{_pct(high)}"


def table(pairs: Pairs, mask: BOOL, calibration: SimilarityMap, draws: npt.NDArray[np.float64] | None) -> str:
    """Markdown table of false accepts and false rejects at TABLE_LEVELS over the pairs in ``mask``."""
    cosines = [calibration.cosine_at(level) for level in TABLE_LEVELS]
    strangers = pairs.cosine[mask & ~pairs.same]
    genuine = pairs.cosine[mask & pairs.same]
    boot_far = boot_frr = None
    if draws is not None:
        boot_far, boot_frr = bootstrap_rates(pairs, mask, cosines, draws)
    header = "| Similarity | cosine | false accepts | FAR | 95% (Wilson) |"
    rule = "|---:|---:|---:|---:|---:|"
    if boot_far is not None:
        header += " 95% (by identity) |"
        rule += "---:|"
    if genuine.size:
        header += " false rejects | FRR | 95% (Wilson) |"
        rule += "---:|---:|---:|"
        if boot_frr is not None:
            header += " 95% (by identity) |"
            rule += "---:|"
    lines = [header, rule]
    for j, (level, cos) in enumerate(zip(TABLE_LEVELS, cosines, strict=True)):
        fa = int((strangers >= cos).sum())
        row = f"| {level} | {cos:.4f} | {fa:,} / {strangers.size:,} | {_pct(fa / max(1, strangers.size))} | {_interval(*wilson(fa, strangers.size))} |"
        if boot_far is not None:
            row += f" {_interval(*np.nanpercentile(boot_far[:, j], [2.5, 97.5]))} |"
        if genuine.size:
            fr = int((genuine < cos).sum())
            row += f" {fr:,} / {genuine.size:,} | {_pct(fr / genuine.size)} | {_interval(*wilson(fr, genuine.size))} |"
            if boot_frr is not None:
                row += f" {_interval(*np.nanpercentile(boot_frr[:, j], [2.5, 97.5]))} |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def verification_figures(
    pairs: Pairs, calibration: SimilarityMap, mask: BOOL | None = None
) -> dict[str, float]:
    """TAR at measured FAR 1e-3 and 1e-4, TAR above every stranger, and balanced accuracy at 80 and 99."""
    sel = np.ones_like(pairs.same) if mask is None else mask
    strangers = np.sort(pairs.cosine[sel & ~pairs.same])[::-1]
    genuine = pairs.cosine[sel & pairs.same]
    out: dict[str, float] = {}
    for far in (1e-3, 1e-4):
        k = math.floor(far * strangers.size + 1e-9)
        out[f"tar_at_far_{far:g}"] = float((genuine > strangers[k]).mean()) if k < strangers.size else 1.0
    out["tar_above_all_strangers"] = float((genuine > strangers[0]).mean())
    out["max_stranger_cosine"] = float(strangers[0])
    for level in (80.0, 99.0):
        c = calibration.cosine_at(level)
        tar, trr = float((genuine >= c).mean()), float((strangers < c).mean())
        out[f"tar_at_{level:g}"] = tar
        out[f"far_at_{level:g}"] = 1.0 - trr
        out[f"balanced_accuracy_at_{level:g}"] = (tar + trr) / 2
    return out


def reliability_plot(
    pairs: Pairs, calibration: SimilarityMap, held_out: dict[float, tuple[float, float, float]], path: Path
) -> None:
    """Promised vs measured false-accept rate over the Similarity threshold, FRR per subset, score histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = np.linspace(0, 100, 401)
    cos_at = np.asarray([calibration.cosine_at(s) for s in levels])
    sim = np.asarray([calibration.similarity(c) for c in pairs.cosine])
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    ax = axes[0]
    for name in ("all", *SUBSETS):
        mask = np.ones_like(pairs.same) if name == "all" else pairs.subset == name
        s = np.sort(pairs.cosine[mask & ~pairs.same])
        if s.size == 0:
            continue
        far = 1.0 - np.searchsorted(s, cos_at, side="left") / s.size
        ax.step(
            levels,
            np.maximum(far, 0.5 / s.size),
            where="post",
            lw=2 if name == "all" else 1,
            label=f"{name} ({s.size:,} stranger pairs)",
        )
    promised = [(lv, r) for lv, r in ANCHOR_RATES if r > 0]
    ax.plot([p[0] for p in promised], [p[1] for p in promised], "ko", label="anchors: stated rate")
    shown = [(lv, held_out[lv]) for lv, r in promised]
    ax.errorbar(
        [lv + 1.5 for lv, _ in shown],
        [max(h[1], 1e-6) for _, h in shown],
        yerr=[
            [max(h[1], 1e-6) - max(h[0], 1e-6) for _, h in shown],
            [max(h[2], 1e-6) - max(h[1], 1e-6) for _, h in shown],
        ],
        fmt="rs",
        ms=4,
        label="held-out identities: measured (median, 10-90%)",
    )
    ax.set_yscale("log")
    ax.set_xlabel("Similarity threshold")
    ax.set_ylabel("false-accept rate (0 drawn at half a pair)")
    ax.set_title("False accepts: stated at the anchors vs measured")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    for name in ("all", "aligned", "celeb5", "photos"):
        mask = np.ones_like(pairs.same) if name == "all" else pairs.subset == name
        g = np.sort(pairs.cosine[mask & pairs.same])
        if g.size:
            ax.plot(
                levels,
                np.searchsorted(g, cos_at, side="left") / g.size,
                lw=2 if name == "all" else 1,
                label=f"{name} ({g.size:,} genuine pairs)",
            )
    ax.set_xlabel("Similarity threshold")
    ax.set_ylabel("false-reject rate")
    ax.set_title("False rejects by subset")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[2]
    bins = np.linspace(0, 100, 101)
    ax.hist(sim[~pairs.same], bins=bins, alpha=0.6, label="strangers", log=True)
    ax.hist(sim[pairs.same], bins=bins, alpha=0.6, label="same person", log=True)
    ax.set_xlabel("Similarity")
    ax.set_ylabel("pairs (log)")
    ax.set_title("Scores of every labeled pair")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Embed, score every pair, fit, print the tables; with --write update the manifest, calibration.md, plot."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "faces")
    parser.add_argument("--pack", default="default")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--flip", action="store_true", help="fit on flip-averaged embeddings (FACEPIPE_FLIP_EMBEDDINGS)"
    )
    parser.add_argument(
        "--cache",
        type=str,
        default="/tmp/facepipe-calibration",
        help="embedding cache folder ('' = none)",
    )
    parser.add_argument(
        "--draws", type=int, default=BOOTSTRAP_DRAWS, help="identity bootstrap draws (0 = none)"
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="store the fit in models/<pack>.json, models/calibration.md and a plot",
    )
    args = parser.parse_args(argv)
    if not (args.data / "labels.csv").is_file():
        print(f"no labels.csv under {args.data}", file=sys.stderr)
        return 2
    labels = read_labels(args.data)
    # FACEPIPE_* settings apply (e.g. FACEPIPE_EMBEDDER_PRECISION): fit on the vectors the engine gives
    engine = get_engine(
        Settings.from_env(
            model_pack=args.pack, provider="cpu", threads=args.threads, flip_embeddings=args.flip
        )
    )
    started = time.perf_counter()
    paths = [r["path"] for r in labels]
    cache = Path(args.cache) if args.cache else None
    vectors, found = cached_embeddings(engine, args.data, paths, args.flip, cache)
    missing = [p for p, ok in zip(paths, found, strict=True) if not ok]
    print(
        f"embedded {len(paths)} images in {time.perf_counter() - started:.1f} s; no face in {len(missing)}: {missing}"
    )
    pairs = all_pairs(labels, vectors, found)
    calibration = fit(pairs)
    draws = identity_draws(pairs.identities, args.draws) if args.draws > 0 else None
    anchor_ci = bootstrap_anchor_cosines(pairs, draws) if draws is not None else {}
    n_gen, n_str = int(pairs.same.sum()), int((~pairs.same).sum())
    held_out = held_out_check(pairs)
    stranger_cosines = pairs.cosine[~pairs.same]
    anchors_md = []
    for level, rate in ANCHOR_RATES:
        cos = calibration.anchor_cosine(level)
        stated = "above every stranger pair" if rate == 0 else f"{rate:g}"
        interval = f"{anchor_ci[level][0]:.4f}-{anchor_ci[level][1]:.4f}" if level in anchor_ci else "-"
        low, median, high = held_out[level]
        anchors_md.append(
            f"| {level:g} | {cos:.4f} | {stated} | {int((stranger_cosines >= cos).sum()):,} of {n_str:,} "
            f"| {interval} | {_pct(median)} ({_pct(low)}-{_pct(high)}) |"
        )
    figures = verification_figures(pairs, calibration)
    sections = [
        "| Similarity | cosine | stated false-accept rate | strangers at or above | anchor cosine, 95% by identity "
        "| held-out identities: measured FAR, median (10th-90th percentile) |",
        "|---:|---:|---|---:|---:|---:|",
        *anchors_md,
        "",
        f"### All pairs: {n_gen:,} genuine, {n_str:,} strangers",
        "",
        table(pairs, np.ones_like(pairs.same), calibration, draws),
    ]
    for name in SUBSETS:
        mask = pairs.subset == name
        title = "strangers from two different folders" if name == "cross" else f"{name}/"
        sections += [
            f"### {title}: {int((mask & pairs.same).sum()):,} genuine, {int((mask & ~pairs.same).sum()):,} strangers",
            "",
            table(pairs, mask, calibration, draws),
        ]
    summary = ", ".join(f"{k} {v:.4f}" for k, v in figures.items())
    text = "\n".join(sections)
    print(text)
    print(summary)
    if args.write:
        mode = "flip-averaged" if args.flip else "plain"
        path = manifest_path(args.pack)
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["calibration_flip" if args.flip else "calibration"] = {
            "kind": "piecewise_linear",
            "embeddings": mode,
            "anchors": [
                {"similarity": level, "cosine": calibration.anchor_cosine(level), "false_accept_rate": rate}
                for level, rate in ANCHOR_RATES
            ],
            "fitted_on": f"labels.csv: every pair of {len(paths)} images, {n_gen} genuine and {n_str} stranger "
            f"pairs, {mode} embeddings (scripts/calibrate.py)",
        }
        path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        day = dt.date.today().isoformat()
        suffix = "-flip" if args.flip else ""
        # packs other than the default get their own report and plot folder
        pack_suffix = "" if args.pack == "default" else f"-{args.pack}"
        folder = f"{day}-calibration{pack_suffix}"
        plot = REPO / "benchmarks" / "results" / folder / f"reliability{suffix}.png"
        reliability_plot(pairs, calibration, held_out, plot)
        doc = REPO / "models" / f"calibration{pack_suffix}{suffix}.md"
        flip_note = (
            "These anchors are stored as `calibration_flip` and used when FACEPIPE_FLIP_EMBEDDINGS=1.\n\n"
            if args.flip
            else f"Flip-averaged embeddings (FACEPIPE_FLIP_EMBEDDINGS=1) have their own fit: `calibration{pack_suffix}-flip.md`.\n\n"
            if (REPO / "models" / f"calibration{pack_suffix}-flip.md").is_file()
            else "Flip-averaged embeddings have no fit of their own for this pack (the plain anchors apply).\n\n"
        )
        other_packs = sorted(
            f"`{p.name}`"
            for p in (REPO / "models").glob("calibration-*.md")
            if not p.name.endswith("-flip.md")
        )
        if not pack_suffix and other_packs:
            flip_note += f"Optional packs have their own fits: {', '.join(other_packs)}.\n\n"
        doc.write_text(
            f"# Similarity calibration{'' if args.pack == 'default' else f': pack {args.pack}'}\n\n"
            "Similarity is a piecewise-linear map of the cosine similarity of two embeddings: 0 at cosine -1, "
            "100 at cosine 1, and through the anchors below, fitted by `scripts/calibrate.py` on every pair of "
            f"the {len(paths)} images of `shared/data/faces/labels.csv` ({n_gen:,} pairs of one person, "
            f"{n_str:,} pairs of strangers; {mode} embeddings). Each anchor sits where the stated share of "
            "stranger pairs scores higher (measured, not extrapolated); between anchors the map is linear in "
            "the cosine; above 99 genuine pairs are spread by their cosine up to 100.\n\n"
            "Rates are shares of pairs with Similarity at or above the threshold (FAR: stranger pairs "
            "accepted; FRR: same-person pairs rejected; an image without a face rejects its pairs). 95% "
            "intervals: Wilson (pairs as independent) and a bootstrap over identities (1,000 draws; the "
            "honest one: pairs of the same two people are not independent). The held-out column tests the "
            "promise on people the fit never saw: the identities are split in halves at random (50 splits, "
            "both ways), the anchors fitted on one half's strangers and measured on the other's.\n\n"
            f"Images without a face: {len(missing)} ({', '.join(missing) or 'none'}).\n\n"
            f"Figures: {summary}.\n\n"
            f"Reliability plot: `benchmarks/results/{folder}/reliability{suffix}.png`.\n\n"
            + flip_note
            + text,
            encoding="utf-8",
        )
        print(f"wrote {path}, {doc} and {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
