"""Image intake: JPEG/PNG bytes to an upright BGR uint8 array, or a clear Rekognition error.

Rules (as Rekognition documents them, where it does): JPEG or PNG only; at most ``max_bytes``
bytes; both sides at least MIN_SIDE pixels; EXIF orientation applied, so width and height are
those of the upright image. Grayscale, 16-bit, palette, CMYK and alpha images are converted to
8-bit BGR (16-bit samples keep their 8 most significant bits; alpha is composited over white).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from pipeline.errors import ImageTooLargeException, InvalidImageFormatException, InvalidParameterException

MIN_SIDE = 80
"""Smallest accepted width and height, in pixels (Rekognition's minimum)."""

MAX_SIDE = 16384
"""Largest accepted width or height, in pixels."""

MAX_PIXELS = 80_000_000
"""Largest accepted width x height (80 megapixels); more is refused before decoding."""

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """An upright image: ``bgr`` is (height, width, 3) uint8 in BGR order; sides in pixels."""

    bgr: npt.NDArray[np.uint8]
    format: str

    @property
    def width(self) -> int:
        """Width in pixels, after EXIF orientation."""
        return int(self.bgr.shape[1])

    @property
    def height(self) -> int:
        """Height in pixels, after EXIF orientation."""
        return int(self.bgr.shape[0])


def _to_bgr(image: Image.Image) -> npt.NDArray[np.uint8]:
    """Any PIL mode to a contiguous (H, W, 3) uint8 BGR array."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        gray = np.asarray(image)
        if mode == "I" and gray.max(initial=0) <= 255:
            gray8 = gray.astype(np.uint8)
        else:
            gray8 = (np.clip(gray, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray8[:, :, None], 3, axis=2))
    if mode == "F":
        gray8 = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray8[:, :, None], 3, axis=2))
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    rgb = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _plain_jpeg(image: Image.Image, data: bytes) -> bool:
    """An 8-bit RGB or gray JPEG that ends with its end-of-image marker: OpenCV decodes these
    faster than PIL with the same result; anything else (CMYK, truncated) takes PIL's path."""
    return image.format == "JPEG" and image.mode in ("RGB", "L") and b"\xff\xd9" in bytes(data[-64:])


def decode_image(data: bytes, max_bytes: int) -> DecodedImage:
    """Decode JPEG/PNG ``data`` (at most ``max_bytes`` bytes) into an upright BGR image.

    Raises InvalidImageFormatException (empty, not JPEG/PNG, corrupt or truncated),
    ImageTooLargeException (more than ``max_bytes`` bytes, or more than MAX_SIDE/MAX_PIXELS
    pixels) and InvalidParameterException (a side below MIN_SIDE pixels).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidParameterException("Image bytes must be binary data")
    size = len(data)
    if size == 0:
        raise InvalidImageFormatException("The image is empty (0 bytes); send JPEG or PNG bytes")
    if size > max_bytes:
        raise ImageTooLargeException(f"The image is {size} bytes; the limit is {max_bytes} bytes")
    head = bytes(data[:8])
    if head.startswith(_JPEG_MAGIC):
        expected = "JPEG"
    elif head.startswith(_PNG_MAGIC):
        expected = "PNG"
    else:
        raise InvalidImageFormatException("Unsupported image format: the image must be a JPEG or a PNG")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[expected])
            width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeException(f"The image's pixel dimensions are too large: {exc}") from None
    except Exception as exc:
        raise InvalidImageFormatException(f"The {expected} image could not be read: {exc}") from None
    if width <= 0 or height <= 0:
        raise InvalidImageFormatException(f"The {expected} image has no pixels ({width}x{height})")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageTooLargeException(
            f"The image is {width}x{height} pixels; the limit is {MAX_SIDE} pixels a side "
            f"and {MAX_PIXELS} pixels in all"
        )
    if width < MIN_SIDE or height < MIN_SIDE:
        raise InvalidParameterException(
            f"The image is {width}x{height} pixels; both sides must be at least {MIN_SIDE} pixels"
        )
    if _plain_jpeg(image, data):
        bgr_fast = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # applies EXIF orientation
        if bgr_fast is not None and bgr_fast.shape[0] * bgr_fast.shape[1] == width * height:
            return DecodedImage(bgr=np.asarray(bgr_fast, dtype=np.uint8), format=expected)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.load()
            upright = ImageOps.exif_transpose(image) or image
            bgr = _to_bgr(upright)
    except Exception as exc:
        raise InvalidImageFormatException(
            f"The {expected} image is corrupt or truncated and could not be decoded: {exc}"
        ) from None
    return DecodedImage(bgr=bgr, format=expected)
