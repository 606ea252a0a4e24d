"""Walking an image folder and naming its files with ExternalImageIds and client request tokens.

An ExternalImageId must match ``[a-zA-Z0-9_.\\-:]+`` and be at most 255 characters. A file's id is
derived from its path relative to the folder (``--external-image-id-from path``, directory
separators become ``:``) or from its file name alone (``name``); every other character outside
the pattern becomes ``_``. An id longer than 255 characters keeps its end (the file name) and is
prefixed by a hash of the full relative path. When two files would get the same id, the first
one met in walk order keeps it and the later one gets ``_`` and 8 hex digits of its relative
path's sha256 appended: the job ledger remembers every assignment, so a file keeps its id across
runs.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import InvalidParameterException

MAX_EXTERNAL_IMAGE_ID = 255
"""Longest ExternalImageId Rekognition accepts."""

MAX_CLIENT_REQUEST_TOKEN = 64
"""Longest ClientRequestToken Rekognition accepts."""

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
"""File name endings (lower-cased) a folder walk picks up: the formats Rekognition accepts."""

ID_SOURCES = ("path", "name")
"""Where an ExternalImageId comes from: the relative path or the file name."""

_DISALLOWED = re.compile(r"[^a-zA-Z0-9_.\-:]")


def _short_hash(text: str) -> str:
    """8 hex digits of ``text``'s sha256: a stable, practically unique suffix."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def external_image_id_for(rel_path: str, source: str = "path") -> str:
    """The ExternalImageId for a file at ``rel_path`` ('/'-separated, relative to the folder).

    ``source`` is 'path' (separators become ':') or 'name' (the last path component only).
    The result always matches Rekognition's ExternalImageId pattern and length.
    """
    if source not in ID_SOURCES:
        raise InvalidParameterException(
            f"external image id source must be one of {ID_SOURCES}, got {source!r}"
        )
    raw = rel_path.replace("\\", "/")
    raw = raw if source == "path" else raw.rsplit("/", 1)[-1]
    candidate = _DISALLOWED.sub("_", raw.replace("/", ":")) or "_"
    if len(candidate) > MAX_EXTERNAL_IMAGE_ID:
        prefix = _short_hash(rel_path) + "_"
        candidate = prefix + candidate[-(MAX_EXTERNAL_IMAGE_ID - len(prefix)) :]
    return candidate


def disambiguate(external_image_id: str, rel_path: str) -> str:
    """The id a file gets when ``external_image_id`` is already taken by another file."""
    suffix = "_" + _short_hash(rel_path)
    return external_image_id[: MAX_EXTERNAL_IMAGE_ID - len(suffix)] + suffix


def walk_images(root: Path, recursive: bool) -> Iterator[str]:
    """Relative paths ('/'-separated) of the image files under ``root``, in a stable sorted order.

    Directories are visited depth first, each directory's entries sorted by name; hidden entries
    (names starting with '.') and symlinked directories are skipped. Memory use is bounded by the
    largest single directory, not by the size of the tree.
    """
    if not root.is_dir():
        raise InvalidParameterException(f"folder not found or not a directory: {root}")

    def visit(directory: Path, prefix: str) -> Iterator[str]:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                if recursive:
                    yield from visit(Path(entry.path), prefix + entry.name + "/")
            elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                yield prefix + entry.name

    yield from visit(root, "")


def client_request_token(*parts: str) -> str:
    """A deterministic ClientRequestToken (``^[a-zA-Z0-9-_]+$``, 64 characters) for ``parts``.

    The same parts always give the same token, so a rerun of a job repeats a request as the same
    idempotent request instead of doing it twice.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return ("fpjob-" + digest)[:MAX_CLIENT_REQUEST_TOKEN]
