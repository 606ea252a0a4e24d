"""Association manifests: which faces belong to which user, as CSV or JSONL.

Each row names a ``user_id`` and exactly one face reference:

- ``face_id``: a FaceId already in the collection;
- ``external_image_id``: an ExternalImageId in the collection (its largest face is used);
- ``image``: an image file (a path relative to the manifest's folder, or absolute), indexed on the
  way (its largest face is used).

CSV needs a header row naming the columns; JSONL has one object per line. A file ending in
``.jsonl``/``.ndjson``, or whose first non-blank character is ``{``, is read as JSONL; anything
else as CSV. Other columns (notes for a reviewer) are ignored, and so are blank lines and lines
starting with ``#``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import InvalidParameterException

REFERENCE_KINDS = ("face_id", "external_image_id", "image")
"""The columns that can name a row's face, exactly one per row."""

_USER_ID = re.compile(r"[a-zA-Z0-9_.\-:]+")
_FACE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_EXTERNAL_IMAGE_ID = re.compile(r"[a-zA-Z0-9_.\-:]+")


@dataclass(frozen=True)
class ManifestRow:
    """One manifest row: ``line`` (1-based, in the file), the user and the face reference."""

    line: int
    user_id: str
    kind: str
    value: str

    def reference(self) -> dict[str, Any]:
        """The row as reported back: line number and reference."""
        return {"Line": self.line, self.kind: self.value}


def _row(line: int, record: dict[str, Any]) -> ManifestRow:
    """Validate one record (column -> value) into a ManifestRow."""

    def text(key: str) -> str:
        value = record.get(key)
        return "" if value is None else str(value).strip()

    user_id = text("user_id")
    if not user_id:
        raise InvalidParameterException(f"manifest line {line}: user_id is missing")
    if len(user_id) > 128 or not _USER_ID.fullmatch(user_id):
        raise InvalidParameterException(
            f"manifest line {line}: user_id {user_id!r} must be 1-128 characters from [a-zA-Z0-9_.\\-:]"
        )
    given = [(kind, text(kind)) for kind in REFERENCE_KINDS if text(kind)]
    if len(given) != 1:
        raise InvalidParameterException(
            f"manifest line {line}: give exactly one of {', '.join(REFERENCE_KINDS)} (got {len(given)})"
        )
    kind, value = given[0]
    if kind == "face_id" and not _FACE_ID.fullmatch(value):
        raise InvalidParameterException(f"manifest line {line}: face_id {value!r} is not a FaceId (a UUID)")
    if kind == "external_image_id" and (len(value) > 255 or not _EXTERNAL_IMAGE_ID.fullmatch(value)):
        raise InvalidParameterException(
            f"manifest line {line}: external_image_id {value!r} must be 1-255 characters from [a-zA-Z0-9_.\\-:]"
        )
    return ManifestRow(line=line, user_id=user_id, kind=kind, value=value)


def _is_jsonl(path: Path, text: str) -> bool:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return True
    if path.suffix.lower() == ".csv":
        return False
    return text.lstrip().startswith("{")


def parse_manifest(text: str, path: Path) -> list[ManifestRow]:
    """The rows of a manifest's ``text`` (``path`` decides the format by its extension)."""
    rows: list[ManifestRow] = []
    if _is_jsonl(path, text):
        for number, raw in enumerate(text.splitlines(), start=1):
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                continue
            try:
                record = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise InvalidParameterException(
                    f"manifest line {number}: not valid JSON ({exc.msg})"
                ) from None
            if not isinstance(record, dict):
                raise InvalidParameterException(f"manifest line {number}: expected a JSON object")
            rows.append(_row(number, record))
        return rows
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    for record in reader:
        number = reader.line_num
        if not record or not "".join(record).strip() or record[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [name.strip().lower() for name in record]
            if "user_id" not in header or not any(kind in header for kind in REFERENCE_KINDS):
                raise InvalidParameterException(
                    f"manifest {path}: the CSV header must name user_id and one of "
                    f"{', '.join(REFERENCE_KINDS)} (got {', '.join(header)})"
                )
            continue
        rows.append(_row(number, dict(zip(header, record, strict=False))))
    return rows


def read_manifest(path: Path) -> list[ManifestRow]:
    """Read and validate the manifest at ``path``; raises InvalidParameterException on bad content."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidParameterException(f"cannot read manifest {path}: {exc}") from None
    rows = parse_manifest(text, path)
    if not rows:
        raise InvalidParameterException(f"manifest {path} has no rows")
    return rows


def write_manifest_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Write ``rows`` (dicts with ``columns``) as a CSV manifest with a header row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
