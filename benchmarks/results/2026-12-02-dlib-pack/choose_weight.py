"""The dlib_fused pack's fusion weight, chosen by 10-fold cross-validation by identity.

Each fused vector is [sqrt(w) s, sqrt(1 - w) d] with s and d unit vectors, so the SFace vector s
and the dlib vector d of every labeled image are recovered from the pack's own embeddings; every
weight w of the grid then gives the fused cosine w cos_s + (1 - w) cos_d of every pair. Identities
are split in 10 folds; on each, w is the one with the highest true-accept rate at a measured
false-accept rate of 1e-3 (Similarity 80's point) over the pairs of the other 9 folds' identities,
measured on the pairs that involve the fold's identities.

Usage: FACEPIPE_EMBEDDER_PRECISION=float32 python benchmarks/results/2026-12-02-dlib-pack/choose_weight.py
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from pipeline.config import Settings  # noqa: E402
from pipeline.vision.engine import get_engine  # noqa: E402
from pipeline.vision.packs import DLIB_FUSED_PACK, read_manifest  # noqa: E402

_spec = importlib.util.spec_from_file_location("calibrate", REPO / "scripts" / "calibrate.py")
assert _spec is not None and _spec.loader is not None
calibrate = importlib.util.module_from_spec(_spec)
sys.modules["calibrate"] = calibrate
_spec.loader.exec_module(calibrate)

GRID = np.round(np.arange(0.10, 0.91, 0.05), 2)


def tar_at_far(
    cos: npt.NDArray[np.float64], same: npt.NDArray[np.bool_], mask: npt.NDArray[np.bool_], far: float
) -> float:
    """True-accept rate above the stranger cosine that ``far`` of the strangers in ``mask`` exceed."""
    strangers = np.sort(cos[mask & ~same])[::-1]
    k = math.floor(far * strangers.size + 1e-9)
    return float((cos[mask & same] > strangers[k]).mean())


def main() -> int:
    data = REPO.parent / "shared" / "data" / "faces"
    labels = calibrate.read_labels(data)
    paths = [r["path"] for r in labels]
    engine = get_engine(Settings.from_env(model_pack=DLIB_FUSED_PACK, provider="cpu", threads=2))
    vectors, found = calibrate.cached_embeddings(
        engine, data, paths, False, Path("/tmp/facepipe-calibration")
    )
    w_pack = float(read_manifest(DLIB_FUSED_PACK)["fusion"]["sface_weight"])
    sface, dlib = vectors[:, :128] / math.sqrt(w_pack), vectors[:, 128:] / math.sqrt(1 - w_pack)
    pairs = calibrate.all_pairs(labels, vectors, found)
    a, b = np.triu_indices(len(paths), 1)
    ok = found[a] & found[b]
    cos_s = np.where(ok, np.einsum("ij,ij->i", sface[a], sface[b]), -1.0)
    cos_d = np.where(ok, np.einsum("ij,ij->i", dlib[a], dlib[b]), -1.0)
    same, everything = pairs.same, np.ones_like(pairs.same)
    print(
        f"SFace alone: TAR at FAR 1e-3 {tar_at_far(cos_s, same, everything, 1e-3):.4f}, 1e-4 {tar_at_far(cos_s, same, everything, 1e-4):.4f}"
    )
    print(
        f"dlib alone:  TAR at FAR 1e-3 {tar_at_far(cos_d, same, everything, 1e-3):.4f}, 1e-4 {tar_at_far(cos_d, same, everything, 1e-4):.4f}"
    )
    print("| w (SFace) | TAR at FAR 1e-3 | TAR at FAR 1e-4 |\n|---:|---:|---:|")
    for w in GRID:
        fused = w * cos_s + (1 - w) * cos_d
        print(
            f"| {w:.2f} | {tar_at_far(fused, same, everything, 1e-3):.4f} | {tar_at_far(fused, same, everything, 1e-4):.4f} |"
        )
    fold_of = np.random.default_rng(0).permutation(pairs.identities) % 10
    chosen, held_fused, held_sface = [], [], []
    for k in range(10):
        in_fold = fold_of == k
        train = ~in_fold[pairs.ident_a] & ~in_fold[pairs.ident_b]
        test = in_fold[pairs.ident_a] | in_fold[pairs.ident_b]
        w = max(GRID, key=lambda w: tar_at_far(w * cos_s + (1 - w) * cos_d, same, train, 1e-3))
        chosen.append(float(w))
        held_fused.append(tar_at_far(w * cos_s + (1 - w) * cos_d, same, test, 1e-3))
        held_sface.append(tar_at_far(cos_s, same, test, 1e-3))
    print(f"chosen per fold: {chosen} ({dict(Counter(chosen))})")
    print(
        f"held-out folds, TAR at FAR 1e-3: fused {np.mean(held_fused):.4f}, SFace {np.mean(held_sface):.4f}"
    )
    print(f"manifest sface_weight: {w_pack}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
