"""Image parameters: ``Image{Bytes | S3Object}`` to the image's bytes.

Bytes are limited to ``settings.max_image_bytes`` (ImageTooLargeException). An S3Object is read
from ``settings.s3_root`` (a local directory whose sub-directories are buckets) or from the
S3-compatible endpoint ``settings.s3_endpoint_url`` (boto3, credentials from the usual sources),
limited to ``settings.max_s3_image_bytes``; ``Version`` is ignored. An object that cannot be
read (missing, not a file, a Name the file system cannot hold: NUL bytes, too long, a path
outside its bucket) is InvalidS3ObjectException.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Settings
from pipeline.errors import ImageTooLargeException, InvalidParameterException, InvalidS3ObjectException
from pipeline.vision.image import DECODE_BUDGET

if TYPE_CHECKING:
    from pipeline.service import FacePipe


def _too_large(size: int, limit: int) -> ImageTooLargeException:
    return ImageTooLargeException(f"Image size {size} bytes exceeds the limit of {limit} bytes")


def _blob(value: Any, field: str) -> bytes:
    """Bytes as botocore takes a blob: bytes-like, a str (sent as UTF-8) or a readable file object."""
    if hasattr(value, "read"):
        value = value.read()
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidParameterException(f"{field}.Bytes must be bytes or valid Unicode text") from None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise InvalidParameterException(f"{field}.Bytes must be bytes; got {type(value).__name__}")


def image_bytes(settings: Settings, image: dict[str, Any], field: str = "Image") -> bytes:
    """The bytes of an Image parameter (exactly one of Bytes and S3Object)."""
    has_bytes = image.get("Bytes") is not None
    has_s3 = image.get("S3Object") is not None
    if has_bytes == has_s3:
        raise InvalidParameterException(f"{field} must have exactly one of Bytes and S3Object")
    if has_bytes:
        data = _blob(image["Bytes"], field)
        if len(data) > settings.max_image_bytes:
            raise _too_large(len(data), settings.max_image_bytes)
        return data
    s3 = image["S3Object"]
    bucket, name = s3.get("Bucket"), s3.get("Name")
    if not bucket or not name:
        raise InvalidParameterException(f"{field}.S3Object must have Bucket and Name")
    if settings.s3_root is not None:
        return _read_local(Path(settings.s3_root), bucket, name, settings.max_s3_image_bytes)
    if settings.s3_endpoint_url:
        return _read_endpoint(settings.s3_endpoint_url, bucket, name, settings.max_s3_image_bytes)
    raise InvalidS3ObjectException(
        "S3Object images need an S3 source: set FACEPIPE_S3_ROOT (a local directory whose sub-directories"
        " are buckets) or FACEPIPE_S3_ENDPOINT_URL (an S3-compatible endpoint)"
    )


def image_size_limit(settings: Settings) -> int:
    """The most bytes any image source accepts (:func:`image_bytes` applies each source's own)."""
    return max(settings.max_image_bytes, settings.max_s3_image_bytes)


def decoded_image(fp: FacePipe, image: dict[str, Any], field: str = "Image") -> Any:
    """An Image parameter read and decoded by the engine: Bytes up to settings.max_image_bytes,
    S3Object up to settings.max_s3_image_bytes (both checked by :func:`image_bytes`), within the
    process's decode budget as the settings size it."""
    data = image_bytes(fp.settings, image, field)
    DECODE_BUDGET.configure(fp.settings.decode_budget_bytes, fp.settings.decode_wait_seconds)
    return fp.engine.decode(data, max_bytes=image_size_limit(fp.settings))


def _read_local(root: Path, bucket: str, name: str, limit: int) -> bytes:
    missing = InvalidS3ObjectException(
        f"Unable to get object metadata from S3: object {_shown_name(name)} not found in bucket {bucket}"
    )
    try:
        bucket_dir = (root / bucket).resolve()
        if not bucket_dir.is_dir() or bucket_dir.parent != root.resolve():
            raise InvalidS3ObjectException(
                f"Unable to get object metadata from S3: bucket {bucket} does not exist"
            )
        if "\0" in name:
            raise missing
        path = (bucket_dir / name).resolve()
        if not path.is_relative_to(bucket_dir) or not path.is_file():
            raise missing
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except (OSError, ValueError):  # a name too long for the file system, unreadable, ...
        raise missing from None
    if len(data) > limit:
        raise _too_large(path.stat().st_size, limit)
    return data


def _shown_name(name: str) -> str:
    """An object Name for a message: control characters escaped, at most 200 characters."""
    shown = "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in name[:200])
    return shown + ("..." if len(name) > 200 else "")


@cache
def _s3_client(endpoint_url: str) -> Any:
    """One S3 client per endpoint for the process (boto3 clients are thread-safe; creating one
    costs tens of milliseconds, too much for every request)."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url)


def _read_endpoint(endpoint_url: str, bucket: str, name: str, limit: int) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    client = _s3_client(endpoint_url)
    try:
        obj = client.get_object(Bucket=bucket, Key=name)
        size = int(obj.get("ContentLength") or 0)
        if size > limit:
            raise _too_large(size, limit)
        data: bytes = obj["Body"].read(limit + 1)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "error")
        raise InvalidS3ObjectException(
            f"Unable to get object metadata from S3: s3://{bucket}/{_shown_name(name)} at {endpoint_url}: {code}"
        ) from err
    except BotoCoreError as err:
        raise InvalidS3ObjectException(
            f"Unable to read s3://{bucket}/{_shown_name(name)} from {endpoint_url}: {err}"
        ) from err
    if len(data) > limit:
        raise _too_large(len(data), limit)
    return data
