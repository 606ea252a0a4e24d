"""The cache of prepared model files: their names (cache keys) and atomic writes.

Kept apart from pipeline.vision.prepare so that loading already-prepared models does not import
onnx (and its dependencies), which costs a process about half a second at start-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

PREPARATION_VERSION = 6
"""Version of pipeline.vision.prepare's transforms (and of the int8 embedder built from them, see
pipeline.vision.precision); part of every prepared file's cache key."""

TRANSFORMS = (
    "fold_dequantize",
    "drop_constant_inputs",
    "dynamic_batch",
    "dynamic_hw",
    "prelu_to_relu",
    "prelu_to_depthwise",
)
"""Names accepted in a manifest's ``prepare`` list, applied in this order (``prelu_to_relu`` and
``prelu_to_depthwise`` are alternatives: at most one of them)."""


def prepared_path(source: Path, source_sha256: str, transforms: Sequence[str], cache_dir: Path) -> Path:
    """The prepared model's file, creating it atomically (temp file + rename) when absent.

    The file name holds the source digest, PREPARATION_VERSION and a digest of the transform list,
    so a changed source, a new preparation or another manifest ``prepare`` list never reuses a
    stale file, and concurrent processes never see a half-written one.
    """
    steps = hashlib.sha256(",".join(name for name in TRANSFORMS if name in transforms).encode()).hexdigest()[
        :8
    ]
    target = (
        cache_dir / "models" / f"{source.stem}.{source_sha256[:16]}.prep{PREPARATION_VERSION}-{steps}.onnx"
    )
    if target.is_file():
        return target
    import onnx

    from pipeline.vision.prepare import prepare_model

    write_atomic(target, prepare_model(onnx.load(str(source)), transforms).SerializeToString())
    return target


def write_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file and a rename, so that concurrent
    readers see the old file or the whole new one, never part of it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
