"""Accuracy suite: face verification on a labeled pairs file, with the calibrated Similarity.

The pairs file is a CSV with columns ``path_a,path_b,same`` (1 = same person) and optionally
``subset``; paths are relative to the file's folder. Every image is embedded once: a 112x112
image is taken as an already aligned face (embedded directly), any other goes through the full
pipeline (decode, detect, align, embed; its largest face). Pairs with an image where no face was
found are left out and counted.
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.bench.context import BenchContext
from pipeline.bench.machine import confirm_provider
from pipeline.bench.report import Figure, SuiteResult, single
from pipeline.bench.stats import auc, rates_at, reliability, roc, tar_at_far
from pipeline.errors import RekognitionError
from pipeline.vision.align import CROP_SIZE

FARS = (1e-2, 1e-3, 1e-4)
"""False accept rates at which the true accept rate is reported."""
THRESHOLDS = (50.0, 75.0, 80.0, 90.0, 95.0, 99.0)
"""Similarity thresholds reported: AssociateFaces' default 75, SearchFaces' default 80, AWS's strict 99,
and the calibration's other anchors (50: 1 in 100 strangers above, 90: 1 in 10,000, 95: 1 in 100,000;
models/calibration.md)."""
QUICK_PAIRS = 300


def read_pairs(path: Path) -> list[tuple[str, str, bool, str]]:
    """(path_a, path_b, same, subset) rows of a pairs CSV; ValueError naming what is wrong."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path_a", "path_b", "same"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{path}: pairs file needs columns path_a, path_b, same; missing {sorted(missing)}"
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            if row["same"] not in ("0", "1"):
                raise ValueError(f"{path} line {line}: same must be 0 or 1, got {row['same']!r}")
            rows.append((row["path_a"], row["path_b"], row["same"] == "1", row.get("subset") or ""))
    if not rows:
        raise ValueError(f"{path}: no pairs")
    return rows


def _quick_sample(
    rows: list[tuple[str, str, bool, str]], n: int, seed: int
) -> list[tuple[str, str, bool, str]]:
    """Up to n pairs, half genuine and half impostor, drawn reproducibly."""
    rng = random.Random(seed)
    same = [r for r in rows if r[2]]
    other = [r for r in rows if not r[2]]
    return rng.sample(same, min(len(same), n // 2)) + rng.sample(other, min(len(other), n - n // 2))


def run_accuracy(ctx: BenchContext) -> SuiteResult:
    """Run the accuracy suite on ``ctx.pairs``."""
    from pipeline.vision.engine import get_engine

    if ctx.pairs is None:
        raise ValueError("the accuracy suite needs a pairs file (--pairs PATH)")
    result = SuiteResult("accuracy")
    engine = get_engine(ctx.settings)
    ctx.provider = confirm_provider(ctx.provider, list(engine.pack.providers))
    rows = read_pairs(ctx.pairs)
    if ctx.quick:
        rows = _quick_sample(rows, QUICK_PAIRS, ctx.seed)
    root = ctx.pairs.parent
    vectors: dict[str, npt.NDArray[np.float32] | None] = {}
    problems: Counter[str] = Counter()
    for name in sorted({p for r in rows for p in r[:2]}):
        try:
            image = engine.decode((root / name).read_bytes())
        except OSError as exc:
            raise ValueError(f"pairs file names {root / name}, which cannot be read: {exc}") from exc
        except RekognitionError as exc:
            problems[type(exc).__name__] += 1
            vectors[name] = None
            continue
        if image.width == CROP_SIZE and image.height == CROP_SIZE:
            vectors[name] = engine.embed_aligned(image.bgr[None])[0]
            continue
        faces = engine.analyze(image, max_faces=1, embed=True)
        if not faces:
            problems["no face found"] += 1
        vectors[name] = faces[0].embedding if faces else None
    kept = [r for r in rows if vectors[r[0]] is not None and vectors[r[1]] is not None]
    if not kept:
        raise ValueError("no pair has a face in both images")
    cosines = np.array([float(np.dot(vectors[a], vectors[b])) for a, b, _, _ in kept])  # type: ignore[arg-type]
    same = np.array([r[2] for r in kept], dtype=bool)
    subsets = np.array([r[3] for r in kept])
    similarity = np.array([engine.similarity(c) for c in cosines])
    curve = roc(cosines, same)
    params: dict[str, Any] = {"pairs": len(kept), "genuine": curve.genuine, "impostor": curve.impostor}
    result.add(Figure("roc_auc", "ROC area under curve", "share", "higher", single(auc(curve)), params))
    unmeasurable = []
    for far in FARS:
        point = tar_at_far(curve, far)
        if point is None:
            unmeasurable.append(f"{far:g}")
            continue
        tar, threshold = point
        result.add(
            Figure(
                f"tar_at_far.{far:g}",
                f"true accept rate at false accept rate {far:g}",
                "share",
                "higher",
                single(tar),
                {**params, "far": far, "cosine": threshold, "similarity": engine.similarity(threshold)},
            )
        )
    threshold_rows = []
    for t in THRESHOLDS:
        rates = rates_at(similarity, same, t)
        threshold_rows.append(rates.to_json())
        for key, value, label, better in (
            ("accuracy_at", rates.accuracy, "accuracy", "higher"),
            ("far_at", rates.far, "false accept rate", "lower"),
            ("frr_at", rates.frr, "false reject rate", "lower"),
        ):
            result.add(
                Figure(f"{key}.{t:g}", f"{label} at Similarity {t:g}", "share", better, single(value), params)
            )
    for subset in sorted(set(subsets.tolist()) - {""}):
        mask = subsets == subset
        if mask.sum() and 0 < same[mask].sum() < mask.sum():
            rates = rates_at(similarity[mask], same[mask], 80.0)
            result.add(
                Figure(
                    f"accuracy_at.80.{subset}",
                    f"accuracy at Similarity 80, subset {subset}",
                    "share",
                    "higher",
                    single(rates.accuracy),
                    {"pairs": int(mask.sum())},
                )
            )
    table, ece = reliability(similarity, same, bins=10)
    result.add(
        Figure("ece", "expected calibration error of Similarity/100", "share", "lower", single(ece), params)
    )
    step = max(1, len(curve.far) // 400)
    result.details = {
        "pairs_file": str(ctx.pairs),
        "pairs_total": len(rows),
        "pairs_used": len(kept),
        "images": len(vectors),
        "images_without_vector": dict(problems),
        "roc": {
            "far": [*curve.far[::step].round(6).tolist(), float(curve.far[-1])],
            "tar": [*curve.tar[::step].round(6).tolist(), float(curve.tar[-1])],
            "genuine": curve.genuine,
            "impostor": curve.impostor,
        },
        "thresholds": threshold_rows,
        "reliability": [vars(b) for b in table],
        "ece": ece,
        "similarity_genuine": similarity[same].round(2).tolist(),
        "similarity_impostor": similarity[~same].round(2).tolist(),
    }
    notes = [
        f"{len(kept)} of {len(rows)} pairs ({curve.genuine} same person, {curve.impostor} different) "
        f"from {ctx.pairs.name}; {sum(problems.values())} of {len(vectors)} images gave no face "
        f"({', '.join(f'{k}: {v}' for k, v in problems.items()) or 'none'}), their pairs are left out."
    ]
    if unmeasurable:
        notes.append(
            f"TAR at FAR {', '.join(unmeasurable)} is not reported: measuring a false accept rate f needs "
            f"at least 1/f impostor pairs, and this file has {curve.impostor:,}."
        )
    notes.append(
        "Reliability: the share of same-person pairs among pairs in each Similarity bin "
        "(depends on the file's mix of same and different pairs). Similarity is calibrated to the "
        "strangers' false-accept rate (80: 1 in 1,000 above), not to a probability of the same "
        "person, so the ECE measures the file's mix as much as the map."
    )
    result.note = " ".join(notes)
    return result
