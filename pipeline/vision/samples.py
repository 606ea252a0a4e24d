"""The sample photos inside the installed insightface wheel: the quickstart's, the benchmarks', the
int8 embedder's calibration faces and the tests'. Only the image files are read; insightface's code
is never imported (it is installed without its dependencies)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SAMPLE_PHOTOS_INSTALL = "pip install --no-deps insightface==2.1"
"""How to add the sample photos: only insightface's data files are used, not its code or dependencies."""


def find_sample_photos() -> Path | None:
    """insightface's ``data/images`` folder (t1.jpg: a group of six faces), found without importing
    insightface; None when it is not installed."""
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "images"
    return folder if folder.is_dir() else None


def sample_photos() -> Path:
    """:func:`find_sample_photos`, or FileNotFoundError saying how to install them."""
    folder = find_sample_photos()
    if folder is None:
        raise FileNotFoundError(
            "the sample photos ship in the insightface package, which is not installed; "
            f"add them with: {SAMPLE_PHOTOS_INSTALL}"
        )
    return folder
