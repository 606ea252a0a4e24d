"""Byte scans of a data directory for vectors, and the file modes the store promises."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

import numpy as np

CHUNK_FLOATS = 8
"""A vector counts as present when any run of this many of its float32 values (32 bytes) appears
anywhere in a file, at any byte offset: a partial copy is found too."""


def vector_chunks(vector: np.ndarray) -> list[bytes]:
    """The float32 little-endian byte runs of ``vector`` the scan looks for."""
    raw = np.ascontiguousarray(vector, dtype="<f4").tobytes()
    step = 4 * CHUNK_FLOATS
    return [raw[i : i + step] for i in range(0, len(raw) - step + 1, step)]


def data_files(data_dir: Path) -> list[Path]:
    """Every regular file under ``data_dir``."""
    return sorted(p for p in data_dir.rglob("*") if p.is_file())


def files_holding(data_dir: Path, vectors: Iterable[np.ndarray]) -> dict[int, list[str]]:
    """For each vector (by position) found in some file of ``data_dir``: the files' names."""
    contents = {p.relative_to(data_dir).as_posix(): p.read_bytes() for p in data_files(data_dir)}
    found: dict[int, list[str]] = {}
    for i, vector in enumerate(vectors):
        chunks = vector_chunks(vector)
        where = [name for name, data in contents.items() if any(c in data for c in chunks)]
        if where:
            found[i] = where
    return found


def loose_modes(data_dir: Path) -> list[str]:
    """Entries under (and including) ``data_dir`` that are not owner-only: dirs 0700, files 0600."""
    bad = []
    for path in [data_dir, *data_dir.rglob("*")]:
        mode = stat.S_IMODE(os.lstat(path).st_mode)
        want = 0o700 if path.is_dir() else 0o600
        if mode != want:
            bad.append(f"{path.relative_to(data_dir.parent)} {mode:o}")
    return bad
