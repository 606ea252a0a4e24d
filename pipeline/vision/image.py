"""Image intake: JPEG/PNG bytes to an upright BGR uint8 array, or a clear Rekognition error.

Rules (as Rekognition documents them, where it does): JPEG or PNG only; at most ``max_bytes``
bytes; both sides at least MIN_SIDE pixels; EXIF orientation applied, so width and height are
those of the upright image. Grayscale, 16-bit, palette, CMYK and alpha images are converted to
8-bit BGR (16-bit samples keep their 8 most significant bits; alpha is composited over white).

What a decode may cost is bounded:

- Sizes are read from the header first: more than MAX_SIDE pixels a side or MAX_PIXELS in all is
  refused before any pixel is decoded.
- Reduced-scale decoding: the detector looks at images shrunk to 640 pixels on the longer side,
  so an image is decoded (JPEG: by libjpeg's DCT scaling, which is also faster) or reduced (PNG,
  after decoding) by the largest factor of 2, 4 or 8 that keeps its longer side at least
  REDUCED_DECODE_SIDE pixels. Images up to 2 x REDUCED_DECODE_SIDE pixels a side are decoded as
  they are. ``DecodedImage.width``/``height`` are the decoded image's, and every box and landmark
  is a ratio of them, so results are in the original image's coordinates;
  ``source_width``/``source_height`` are the upright file's own size, whatever the reduction (what
  identifies the image, e.g. in the duplicate-face key).
- A process-wide budget (:class:`DecodeBudget`) bounds the memory of the decodes running at once;
  a decode waits for its share and after ``wait_seconds`` gives up with ThrottlingException.
- A JPEG whose data ends before the image is complete is refused (InvalidImageFormatException),
  whether or not an end-of-image marker was appended: the scan data must hold at least one bit
  per 8x8 block, and where the decoded pixels could come from missing data, a second decode with
  filler bytes before the end marker must give the same pixels.
"""

from __future__ import annotations

import io
import math
import re
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageChops

from pipeline.config import DEFAULT_DECODE_BUDGET_BYTES, DEFAULT_DECODE_WAIT_SECONDS
from pipeline.errors import (
    ImageTooLargeException,
    InvalidImageFormatException,
    InvalidParameterException,
    ThrottlingException,
)

MIN_SIDE = 80
"""Smallest accepted width and height, in pixels (Rekognition's minimum)."""

MAX_SIDE = 16384
"""Largest accepted width or height, in pixels."""

MAX_PIXELS = 80_000_000
"""Largest accepted width x height (80 megapixels); more is refused before decoding."""

REDUCED_DECODE_SIDE = 2560
"""Images are decoded reduced by 2, 4 or 8 while their longer side stays at least this many pixels:
four times the detector's 640-pixel input, so faces keep more pixels than the 112-pixel aligned
crop needs wherever the detector can find them."""

PIL_BLOCK_BYTES = 64 * 1024 * 1024
"""PIL allocates large images in blocks of this size: above glibc's largest mmap threshold (32 MiB),
so a decoded image's memory goes back to the system when it is freed instead of staying in the
decoding thread's malloc arena (with PIL's default 16 MiB blocks, every server thread that once
decoded a large PNG kept its size)."""
Image.core.set_block_size(PIL_BLOCK_BYTES)

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_REDUCTIONS = (8, 4, 2)
_CV2_JPEG_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_FILLER = bytes((i * 73 + 41) % 255 for i in range(64))
"""Bytes (never 0xFF) put before a JPEG's end marker to see whether decoding reads past its data."""
_TRUNCATED = "The JPEG image is truncated or corrupt: its data ends before the image is complete"


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """An upright image: ``bgr`` is (height, width, 3) uint8 in BGR order; sides in pixels.

    ``source_width``/``source_height``: the file's size from its header, after EXIF orientation (sides
    swapped for orientations 5-8), before any reduction. ``reduction`` is the factor (1, 2, 4 or 8)
    the file's pixels were reduced by on decoding.
    """

    bgr: npt.NDArray[np.uint8]
    format: str
    source_width: int
    source_height: int
    reduction: int = 1

    @property
    def width(self) -> int:
        """Width in pixels, after EXIF orientation (and reduction)."""
        return int(self.bgr.shape[1])

    @property
    def height(self) -> int:
        """Height in pixels, after EXIF orientation (and reduction)."""
        return int(self.bgr.shape[0])


class DecodeBudget:
    """Bytes of decode memory in use across the process; decodes take their share first-come
    first-served and wait while the budget is spent. A decode larger than the whole budget runs
    when nothing else is decoding."""

    def __init__(self, total_bytes: int, wait_seconds: float) -> None:
        self.total_bytes = int(total_bytes)
        self.wait_seconds = float(wait_seconds)
        self.in_use = 0
        self._changed = threading.Condition()
        self._queue: deque[object] = deque()

    def configure(self, total_bytes: int, wait_seconds: float) -> None:
        """Set the budget (bytes) and the longest wait (seconds)."""
        if (int(total_bytes), float(wait_seconds)) == (self.total_bytes, self.wait_seconds):
            return
        with self._changed:
            self.total_bytes, self.wait_seconds = int(total_bytes), float(wait_seconds)
            self._changed.notify_all()

    @contextmanager
    def reserve(self, cost: int) -> Iterator[None]:
        """Hold ``cost`` bytes of the budget for the duration of the block; ThrottlingException
        when they are not free within ``wait_seconds``."""
        ticket = object()
        with self._changed:
            share = max(1, min(int(cost), self.total_bytes))
            deadline = time.monotonic() + self.wait_seconds
            self._queue.append(ticket)
            try:
                while self._queue[0] is not ticket or self.in_use + share > self.total_bytes:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise ThrottlingException(
                            "The server is decoding as many images as its memory budget allows; "
                            f"no room came free within {self.wait_seconds:g} seconds. Try your call again."
                        )
                    self._changed.wait(remaining)
                self.in_use += share
            finally:
                self._queue.remove(ticket)
                self._changed.notify_all()
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= share
                self._changed.notify_all()


DECODE_BUDGET = DecodeBudget(DEFAULT_DECODE_BUDGET_BYTES, DEFAULT_DECODE_WAIT_SECONDS)
"""The process's decode budget: 1 GiB and a 10-second wait unless Settings say otherwise (the
service applies its Settings' decode_budget_bytes and decode_wait_seconds)."""


def reduction_for(width: int, height: int, min_side: int = REDUCED_DECODE_SIDE) -> int:
    """The largest of 8, 4, 2 that keeps the longer side at least ``min_side`` pixels, else 1."""
    longer = max(width, height)
    return next((f for f in _REDUCTIONS if longer / f >= min_side), 1)


@dataclass(frozen=True)
class _JpegLayout:
    """Where a JPEG's parts are: ``end`` is the offset of the end-of-image marker after the last
    scan; ``scan_bytes`` the entropy-coded bytes of all scans; ``frame`` the SOF marker (0xC0-0xCF);
    ``sampling`` the (horizontal, vertical) sampling factors of each component."""

    end: int
    scan_bytes: int
    frame: int
    sampling: tuple[tuple[int, int], ...]

    @property
    def huffman(self) -> bool:
        return self.frame in (0xC0, 0xC1, 0xC2)

    @property
    def progressive(self) -> bool:
        return self.frame in (0xC2, 0xC6, 0xCA, 0xCE)

    def blocks(self, width: int, height: int) -> list[int]:
        """8x8 blocks of each component of a ``width`` x ``height`` frame."""
        h_max = max(h for h, _ in self.sampling)
        v_max = max(v for _, v in self.sampling)
        return [
            math.ceil(math.ceil(width * h / h_max) / 8) * math.ceil(math.ceil(height * v / v_max) / 8)
            for h, v in self.sampling
        ]


def _jpeg_layout(data: bytes) -> _JpegLayout | None:
    """The layout of a JPEG's marker segments, or None when its data ends before the
    end-of-image marker that follows the last scan."""
    size, pos, scan_bytes = len(data), 2, 0
    frame, sampling = 0, cast(tuple[tuple[int, int], ...], ())
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0:
            return None
        while pos < size and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= size:
            return None
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            return _JpegLayout(pos - 2, scan_bytes, frame, sampling) if frame and sampling else None
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a segment
            continue
        if pos + 2 > size:
            return None
        end = pos + int.from_bytes(data[pos : pos + 2], "big")
        if end > size or end < pos + 2:
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and not frame and end - pos >= 8:
            count = data[pos + 7]
            parts = data[pos + 8 : pos + 8 + 3 * count]
            if len(parts) == 3 * count and count:
                frame = marker
                sampling = tuple(
                    (parts[i + 1] >> 4 or 1, parts[i + 1] & 15 or 1) for i in range(0, len(parts), 3)
                )
        pos = end
        if marker == 0xDA:  # a scan: its entropy-coded data runs to the next marker
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                return None
            scan_bytes += found.start() - pos
            pos = found.start()


_ORIENTATIONS: dict[int, Callable[[npt.NDArray[np.uint8]], Any]] = {
    2: lambda bgr: cv2.flip(bgr, 1),
    3: lambda bgr: cv2.rotate(bgr, cv2.ROTATE_180),
    4: lambda bgr: cv2.flip(bgr, 0),
    5: lambda bgr: cv2.transpose(bgr),
    6: lambda bgr: cv2.rotate(bgr, cv2.ROTATE_90_CLOCKWISE),
    7: lambda bgr: cv2.flip(cv2.transpose(bgr), -1),
    8: lambda bgr: cv2.rotate(bgr, cv2.ROTATE_90_COUNTERCLOCKWISE),
}
"""EXIF orientation (2-8) to the operation that makes a stored-orientation image upright, as PIL's
ImageOps.exif_transpose does."""
_TRANSPOSING_ORIENTATIONS = frozenset((5, 6, 7, 8))
"""EXIF orientations whose upright image has the stored image's width and height swapped."""


def _orient(bgr: npt.NDArray[np.uint8], orientation: int) -> npt.NDArray[np.uint8]:
    """Apply an EXIF orientation (1-8) to a stored-orientation image."""
    turn = _ORIENTATIONS.get(orientation)
    return np.ascontiguousarray(bgr if turn is None else turn(bgr), dtype=np.uint8)


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8) of an opened image; 1 when absent or unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns about damaged EXIF blocks
            value = image.getexif().get(0x0112, 1)
        return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1
    except Exception:  # a damaged EXIF block does not make the pixels unusable
        return 1


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
    rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    return np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), dtype=np.uint8)


_ALPHA_MODES = frozenset(("RGBA", "LA", "PA", "RGBa", "La"))
_WIDE_MODES = frozenset(("I;16", "I;16B", "I;16L", "I;16N", "I", "F"))


def _decode_cost(image: Image.Image, layout: _JpegLayout | None, reduction: int) -> int:
    """Bytes a decode holds at its peak: an estimate from the header, erring high, of the copies
    the decode path below makes (bytes per pixel, of the full or the reduced image)."""
    width, height = image.size
    full = width * height
    reduced = math.ceil(width / reduction) * math.ceil(height / reduction)
    if layout is not None:
        if image.mode in ("RGB", "L") and layout.huffman and not layout.progressive:
            # OpenCV's 3-byte output, and when its last block is mid-grey the re-check: two PIL
            # decodes (4 bytes a pixel each) and their 4-byte difference image
            return reduced * 15
        # PIL: the decode, the filler decode and their difference (12), or (CMYK) the decode, its
        # conversion to RGB and two 3-byte arrays (16 with slack); whole-image coefficients when
        # progressive
        coefficients = sum(layout.blocks(width, height)) * 128 if layout.progressive else 0
        return reduced * (12 if image.mode in ("RGB", "L") else 16) + coefficients
    mode = image.mode
    if mode == "P" and "transparency" in image.info:
        mode = "PA"
    if mode in _WIDE_MODES:  # 16/32-bit samples are converted to 8-bit BGR at full size
        return full * 16 + reduced * 3
    alpha = mode in _ALPHA_MODES  # composited over white: RGBA copy, white, composite, RGB, BGR
    if reduction == 1:  # PIL's 4-byte pixels, then the conversions to BGR
        return full * (28 if alpha else 14)
    # PIL's pixels (twice for a palette image expanded before reducing), then the reduced image
    # and its conversions
    palette_copy = full * 4 if mode in ("P", "PA") else 0
    return full * 4 + palette_copy + reduced * (30 if alpha else 10)


def _decode_jpeg(
    data: bytes, image: Image.Image, layout: _JpegLayout, reduction: int
) -> npt.NDArray[np.uint8]:
    """The stored-orientation pixels of a complete JPEG at 1/``reduction`` scale; refuses one
    whose data ends early.

    A plain baseline JPEG (8-bit RGB or gray, Huffman-coded, one scan) is decoded by OpenCV, the
    fastest; its data ended early only if its last block came out exactly mid-grey (libjpeg fills
    missing blocks with zeros), and only then is it decoded again to make sure. Progressive, CMYK
    and arithmetic-coded JPEGs hide missing data in any block: PIL decodes them, and once more
    with filler before the end marker, and the two must be the same.
    """
    padded = data[: layout.end] + _FILLER + data[layout.end :]
    if image.mode in ("RGB", "L") and layout.huffman and not layout.progressive:
        flag = _CV2_JPEG_FLAGS[reduction] | cv2.IMREAD_IGNORE_ORIENTATION
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        if decoded is not None:
            bgr = np.asarray(decoded, dtype=np.uint8)
            if bool((bgr[-1, -1] == 128).all()) and not _same_pixels(
                _pil_jpeg(data, reduction), padded, reduction
            ):
                raise InvalidImageFormatException(_TRUNCATED)
            return bgr
    loaded = _pil_jpeg(image, reduction)
    if not _same_pixels(loaded, padded, reduction):
        raise InvalidImageFormatException(_TRUNCATED)
    return _to_bgr(loaded)


def _pil_jpeg(source: bytes | Image.Image, reduction: int) -> Image.Image:
    """A JPEG (bytes, or opened and not yet loaded) loaded by PIL at 1/``reduction`` scale.

    PIL keeps libjpeg's warnings quiet (OpenCV prints them to stderr)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(source), formats=["JPEG"]) if isinstance(source, bytes) else source
            if reduction > 1:
                image.draft(image.mode, (image.size[0] // reduction, image.size[1] // reduction))
            image.load()
            return image
    except Exception:
        raise InvalidImageFormatException(
            "The JPEG image is corrupt or truncated and could not be decoded"
        ) from None


def _same_pixels(first: Image.Image, second: bytes, reduction: int) -> bool:
    """Whether JPEG ``second`` decodes (by PIL at 1/``reduction`` scale) to exactly ``first``."""
    try:
        other = _pil_jpeg(second, reduction)
    except InvalidImageFormatException:
        return False
    return (
        first.size == other.size
        and first.mode == other.mode
        and ImageChops.difference(first, other).getbbox() is None
    )


def _decode_png(image: Image.Image, reduction: int) -> npt.NDArray[np.uint8]:
    """The stored-orientation pixels of a PNG, reduced by ``reduction`` right after decoding
    (PIL: one 4-byte pixel buffer at full size, then only the reduced image is converted)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.load()
            if reduction > 1:
                if image.mode == "P":
                    image = image.convert("RGBA" if "transparency" in image.info else "RGB")
                try:
                    image = image.reduce(reduction)
                except ValueError:  # modes PIL cannot reduce (16-bit): convert, then resize
                    bgr = _to_bgr(image)
                    return np.asarray(
                        cv2.resize(
                            bgr, None, fx=1 / reduction, fy=1 / reduction, interpolation=cv2.INTER_AREA
                        ),
                        dtype=np.uint8,
                    )
            return _to_bgr(image)
    except Exception:
        raise InvalidImageFormatException(
            "The PNG image is corrupt or truncated and could not be decoded"
        ) from None


def decode_image(data: bytes, max_bytes: int, budget: DecodeBudget | None = None) -> DecodedImage:
    """Decode JPEG/PNG ``data`` (at most ``max_bytes`` bytes) into an upright BGR image, reduced as
    :func:`reduction_for` says, within ``budget`` (default: the process's DECODE_BUDGET).

    Raises InvalidImageFormatException (empty, not JPEG/PNG, corrupt or truncated),
    ImageTooLargeException (more than ``max_bytes`` bytes, or more than MAX_SIDE/MAX_PIXELS
    pixels), InvalidParameterException (a side below MIN_SIDE pixels) and ThrottlingException
    (no room in the decode budget in time).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidParameterException("Image bytes must be binary data")
    data = bytes(data)
    size = len(data)
    if size == 0:
        raise InvalidImageFormatException("The image is empty (0 bytes); send JPEG or PNG bytes")
    if size > max_bytes:
        raise ImageTooLargeException(f"The image is {size} bytes; the limit is {max_bytes} bytes")
    if data.startswith(_JPEG_MAGIC):
        expected = "JPEG"
    elif data.startswith(_PNG_MAGIC):
        expected = "PNG"
    else:
        raise InvalidImageFormatException("Unsupported image format: the image must be a JPEG or a PNG")
    limits = f"the limit is {MAX_SIDE} pixels a side and {MAX_PIXELS} pixels in all"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. damaged EXIF: the pixels may still be fine
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[expected])
            width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeException(f"The image's pixel dimensions are too large; {limits}") from None
    except Exception:
        raise InvalidImageFormatException(
            f"The {expected} image could not be read: its header is missing or damaged"
        ) from None
    if width <= 0 or height <= 0:
        raise InvalidImageFormatException(f"The {expected} image has no pixels ({width}x{height})")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageTooLargeException(f"The image is {width}x{height} pixels; {limits}")
    if width < MIN_SIDE or height < MIN_SIDE:
        raise InvalidParameterException(
            f"The image is {width}x{height} pixels; both sides must be at least {MIN_SIDE} pixels"
        )
    layout = None
    if expected == "JPEG":
        layout = _jpeg_layout(data)
        if layout is None:
            raise InvalidImageFormatException(_TRUNCATED)
        if layout.huffman and layout.scan_bytes * 8 < layout.blocks(width, height)[0]:
            raise InvalidImageFormatException(_TRUNCATED)  # under one bit per block: data missing
    reduction = reduction_for(width, height)
    decode: Callable[[], npt.NDArray[np.uint8]]
    if layout is not None:
        jpeg_layout = layout
        decode = lambda: _decode_jpeg(data, image, jpeg_layout, reduction)  # noqa: E731
    else:
        decode = lambda: _decode_png(image, reduction)  # noqa: E731
    with (budget or DECODE_BUDGET).reserve(_decode_cost(image, layout, reduction)):
        try:
            pixels = decode()
            orientation = _orientation(image)  # after decoding: a PNG's EXIF may follow its pixels
            bgr = _orient(pixels, orientation)
        finally:
            image.close()  # its full-size pixels go now, while the budget still counts them
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return DecodedImage(
        bgr=bgr, format=expected, source_width=width, source_height=height, reduction=reduction
    )
