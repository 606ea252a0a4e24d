"""Does the int8 embedder keep the verification figures? float32 against int8 on the shared faces.

    python benchmarks/bench_embedder_precision.py [--data ../shared/data/faces] [--out FILE.json]

Embeds every photo of labels.csv twice, through the engine with FACEPIPE_EMBEDDER_PRECISION
float32 and int8 (the fastest int8 variant measured on this CPU), as scripts/calibrate.py does
(largest face of each photo, aligned crops as they are), then compares, with the engine's
calibration: per-image cosine of the two embeddings; on the pairs of pairs.csv, accuracy,
false-accept and false-reject rates at each Similarity level; on all pairs of labels.csv
(about 330,000 stranger pairs), false-accept and false-reject rates and the true-accept rate at
false-accept rates 1e-3 and 1e-4. Also prints the machine's embedder choice file (gate, times).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import calibrate  # noqa: E402

from pipeline.bench.machine import cpu_flags, cpu_model  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.vision.engine import get_engine  # noqa: E402

LEVELS = (50, 75, 80, 90, 95, 99)


def figures(precision: str, data: Path) -> tuple[dict[str, Any], np.ndarray]:
    """The verification figures of one precision, and its embeddings (labels.csv order)."""
    engine = get_engine(Settings(provider="cpu", embedder_precision=precision))
    labels = calibrate.read_labels(data)
    paths = [row["path"] for row in labels]
    vectors, found = calibrate.embed_all(engine, data, paths)
    pairs = calibrate.all_pairs(labels, vectors, found)
    index = {p: i for i, p in enumerate(paths)}
    with (data / "pairs.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    a = np.array([index[r["path_a"]] for r in rows])
    b = np.array([index[r["path_b"]] for r in rows])
    same = np.array([r["same"] == "1" for r in rows])
    cosine = np.einsum("ij,ij->i", vectors[a], vectors[b])
    cosine[~(found[a] & found[b])] = -1.0
    levels = {}
    for level in LEVELS:
        threshold = engine.calibration.cosine_at(level)
        accept, all_accept = cosine >= threshold, pairs.cosine >= threshold
        levels[str(level)] = {
            "pairs_csv_accuracy_pct": 100 * float(((accept & same) | (~accept & ~same)).mean()),
            "pairs_csv_far_pct": 100 * float((accept & ~same).sum() / (~same).sum()),
            "pairs_csv_frr_pct": 100 * float((~accept & same).sum() / same.sum()),
            "all_pairs_far_pct": 100 * float((all_accept & ~pairs.same).sum() / (~pairs.same).sum()),
            "all_pairs_frr_pct": 100 * float((~all_accept & pairs.same).sum() / pairs.same.sum()),
        }
    verification = calibrate.verification_figures(pairs, engine.calibration)
    return {
        "variant": engine.stream_pack.embedder_variant,
        "levels": levels,
        "all_pairs": {k: float(v) for k, v in verification.items()},
        "stranger_pairs": int((~pairs.same).sum()),
        "genuine_pairs": int(pairs.same.sum()),
        "pairs_csv": len(rows),
    }, vectors


def main(argv: list[str] | None = None) -> int:
    """Measure both precisions, print the differences, save the JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "faces")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not (args.data / "labels.csv").is_file():
        print(f"no labels.csv under {args.data}", file=sys.stderr)
        return 2
    base, base_vectors = figures("float32", args.data)
    int8, int8_vectors = figures("int8", args.data)
    present = np.linalg.norm(base_vectors, axis=1) > 0
    agreement = np.sum(base_vectors * int8_vectors, axis=1)[present]
    report = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "float32": base,
        "int8": int8,
        "per_image_cosine_int8_to_float32": {"mean": float(agreement.mean()), "min": float(agreement.min())},
        "change_in_points": {
            level: {k: round(int8["levels"][level][k] - v, 3) for k, v in figures_at.items()}
            for level, figures_at in base["levels"].items()
        },
        "change_in_points_all_pairs": {
            k: round(100 * (int8["all_pairs"][k] - v), 3)
            for k, v in base["all_pairs"].items()
            if "cosine" not in k
        },
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
