"""Image intake: formats, limits and conversions, each with the Rekognition error users get."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from pipeline.config import DEFAULT_DECODE_BUDGET_BYTES
from pipeline.errors import (
    ImageTooLargeException,
    InvalidImageFormatException,
    InvalidParameterException,
    ThrottlingException,
)
from pipeline.vision.image import (
    MIN_SIDE,
    DecodeBudget,
    decode_image,
    reduction_for,
)
from pipeline.vision.samples import sample_photos

LIMIT = 5 * 1024 * 1024
SAMPLE_IMAGES = sample_photos()
"""Photos that ship inside the installed insightface package (t1.jpg: 1280x886, six faces)."""


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def gradient(width: int = 160, height: int = 120) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    rgb = np.stack([x, np.full_like(x, 40), 255 - x], axis=2)
    return Image.fromarray(rgb, "RGB")


def test_jpeg_and_png_decode_to_bgr() -> None:
    png = decode_image(encode(gradient(), "PNG"), LIMIT)
    assert (png.width, png.height, png.format) == (160, 120, "PNG")
    assert png.bgr.shape == (120, 160, 3) and png.bgr.dtype == np.uint8
    # red ramps left to right in RGB, so channel 2 of BGR does
    assert png.bgr[0, -1, 2] == 255 and png.bgr[0, -1, 0] == 0
    jpg = decode_image(encode(gradient(), "JPEG", quality=95), LIMIT)
    assert jpg.format == "JPEG" and abs(int(jpg.bgr[60, 150, 2]) - int(png.bgr[60, 150, 2])) < 10


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GIF89a" + b"\0" * 100,
        b"\xff\xd8\xff" + b"\0" * 50,
        b"\x89PNG\r\n\x1a\n" + b"junk" * 10,
        b"hello",
    ],
)
def test_not_an_image_is_invalid_format(data: bytes) -> None:
    with pytest.raises(InvalidImageFormatException) as err:
        decode_image(data, LIMIT)
    assert err.value.message


def test_truncated_jpeg_and_png_are_invalid_format() -> None:
    for fmt in ("JPEG", "PNG"):
        data = encode(gradient(400, 300), fmt)
        with pytest.raises(InvalidImageFormatException, match=r"truncated|could not"):
            decode_image(data[: len(data) // 2], LIMIT)


def test_too_many_bytes_is_image_too_large() -> None:
    data = encode(gradient(), "PNG")
    with pytest.raises(ImageTooLargeException, match=str(len(data) - 1)):
        decode_image(data, len(data) - 1)


def test_absurd_pixel_dimensions_are_refused_before_decoding() -> None:
    data = encode(Image.new("L", (20000, 100)), "PNG")
    assert len(data) < 100_000
    with pytest.raises(ImageTooLargeException, match="20000x100"):
        decode_image(data, LIMIT)


def test_small_sides_are_invalid_parameter() -> None:
    with pytest.raises(InvalidParameterException, match=f"at least {MIN_SIDE}"):
        decode_image(encode(gradient(MIN_SIDE - 1, 200), "PNG"), LIMIT)
    assert decode_image(encode(gradient(MIN_SIDE, MIN_SIDE), "PNG"), LIMIT).width == MIN_SIDE


def test_gray_16bit_rgba_cmyk_and_palette_become_bgr() -> None:
    gray16 = Image.fromarray(np.full((100, 100), 40000, dtype=np.uint16))
    out = decode_image(encode(gray16, "PNG"), LIMIT).bgr
    assert out.shape == (100, 100, 3) and int(out[0, 0, 0]) == 40000 >> 8
    gray = decode_image(encode(Image.new("L", (100, 90), 77), "JPEG"), LIMIT).bgr
    assert gray.shape == (90, 100, 3) and abs(int(gray[5, 5, 1]) - 77) <= 2
    rgba = Image.new("RGBA", (100, 100), (255, 0, 0, 0))
    assert decode_image(encode(rgba, "PNG"), LIMIT).bgr[0, 0].tolist() == [255, 255, 255]  # over white
    cmyk = Image.new("CMYK", (100, 100), (0, 255, 255, 0))  # red
    b, g, r = decode_image(encode(cmyk, "JPEG"), LIMIT).bgr[50, 50].tolist()
    assert r > 200 and g < 60 and b < 60
    palette = gradient().convert("P")
    assert decode_image(encode(palette, "PNG"), LIMIT).bgr.shape == (120, 160, 3)


def test_exif_orientation_is_applied() -> None:
    image = gradient(200, 100)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = decode_image(encode(image, "JPEG", exif=exif.tobytes()), LIMIT)
    assert (decoded.width, decoded.height) == (100, 200)
    # the ramp's bright-red end (right in the stored image) ends at the bottom after the rotation
    assert decoded.bgr[-1, 50, 2] > 200 and decoded.bgr[0, 50, 2] < 60


# --- what a decode may cost ---------------------------------------------------------------------
T1 = SAMPLE_IMAGES / "t1.jpg"


class CountingBudget(DecodeBudget):
    """A decode budget that records every reservation."""

    def __init__(self, total_bytes: int = 1 << 30, wait_seconds: float = 5.0) -> None:
        super().__init__(total_bytes, wait_seconds)
        self.costs: list[int] = []

    @contextmanager
    def reserve(self, cost: int) -> Iterator[None]:
        self.costs.append(cost)
        with super().reserve(cost):
            yield


def t1_variants() -> dict[str, bytes]:
    photo = Image.open(T1)
    return {
        "baseline": T1.read_bytes(),
        "progressive": encode(photo, "JPEG", progressive=True, quality=90),
        "cmyk": encode(photo.convert("CMYK"), "JPEG", quality=90),
        "restart-markers": encode(photo, "JPEG", quality=90, restart_marker_blocks=8),
    }


@pytest.mark.parametrize("kind", ["baseline", "progressive", "cmyk", "restart-markers"])
@pytest.mark.parametrize("kept", [0.3, 0.7, 0.97])
def test_a_truncated_jpeg_is_refused_with_or_without_an_end_marker(kind: str, kept: float) -> None:
    data = t1_variants()[kind]
    assert decode_image(data, LIMIT).bgr.shape == (886, 1280, 3)
    cut = data[: int(len(data) * kept)]
    messages = set()
    for tail in (b"", b"\xff\xd9"):
        with pytest.raises(InvalidImageFormatException) as caught:
            decode_image(cut + tail, LIMIT)
        messages.add(caught.value.message)
    assert messages == {"The JPEG image is truncated or corrupt: its data ends before the image is complete"}


def test_sample_photos_decode_complete() -> None:
    for path in sorted(SAMPLE_IMAGES.iterdir()):
        decoded = decode_image(path.read_bytes(), LIMIT)
        assert decoded.reduction == 1 and decoded.width >= MIN_SIDE


def test_a_jpeg_claiming_80_megapixels_in_405_bytes_is_refused_before_decoding() -> None:
    data = bytearray(encode(Image.new("L", (80, 80), 128), "JPEG", quality=50))
    frame = data.find(b"\xff\xc0")
    data[frame + 5 : frame + 9] = (4882).to_bytes(2, "big") + (16384).to_bytes(2, "big")
    assert len(data) < 1000
    budget = CountingBudget()
    started = time.perf_counter()
    with pytest.raises(InvalidImageFormatException, match="truncated"):
        decode_image(bytes(data), LIMIT, budget)
    assert budget.costs == [] and time.perf_counter() - started < 0.5  # no pixel was decoded


def test_large_jpegs_decode_reduced_with_the_same_picture() -> None:
    photo = Image.open(T1).resize((6400, 4430), Image.Resampling.BICUBIC)
    data = encode(photo, "JPEG", quality=92)
    budget = CountingBudget()
    decoded = decode_image(data, 16 << 20, budget)
    assert decoded.reduction == 2 and (decoded.width, decoded.height) == (3200, 2215)
    assert (decoded.source_width, decoded.source_height) == (6400, 4430)  # the file's own size
    assert budget.costs and budget.costs[0] < 6400 * 4430 * 4  # the reduced image, not 28 megapixels
    full = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    expected = cv2.resize(full, (3200, 2215), interpolation=cv2.INTER_AREA)
    assert float(np.abs(decoded.bgr.astype(np.int16) - expected).mean()) < 2.0
    assert reduction_for(5119, 100) == 1 and reduction_for(5120, 100) == 2 and reduction_for(16384, 80) == 4


def test_large_pngs_are_reduced_after_decoding() -> None:
    photo = Image.open(T1).resize((5600, 3876))
    decoded = decode_image(encode(photo, "PNG", compress_level=1), 64 << 20)
    assert decoded.reduction == 2 and (decoded.width, decoded.height) == (2800, 1938)
    expected = np.asarray(photo.reduce(2))[:, :, ::-1]
    assert float(np.abs(decoded.bgr.astype(np.int16) - expected).mean()) < 1.0


def test_a_reduced_rotated_jpeg_reports_its_upright_source_size() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 6000x4000, upright 4000x6000
    data = encode(gradient(6000, 4000), "JPEG", quality=80, exif=exif.tobytes())
    decoded = decode_image(data, 16 << 20)
    assert decoded.reduction == 2 and (decoded.width, decoded.height) == (2000, 3000)
    assert (decoded.source_width, decoded.source_height) == (4000, 6000)


def test_a_truncated_png_is_refused_with_or_without_its_end_chunk() -> None:
    data = encode(gradient(400, 300), "PNG")
    for tail in (b"", data[-12:]):  # the IEND chunk
        with pytest.raises(InvalidImageFormatException, match="truncated"):
            decode_image(data[: len(data) // 2] + tail, LIMIT)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pil(orientation: int, tmp_path: Path) -> None:
    image = gradient(200, 120)
    exif = Image.Exif()
    exif[0x0112] = orientation
    for fmt in ("JPEG", "PNG"):
        data = encode(image, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
        upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))[:, :, ::-1]
        image_out = decode_image(data, LIMIT)
        decoded = image_out.bgr
        assert decoded.shape == upright.shape
        assert (image_out.source_width, image_out.source_height) == (upright.shape[1], upright.shape[0])
        assert float(np.abs(decoded.astype(np.int16) - upright).mean()) < 3.0, (fmt, orientation)


def test_the_budget_makes_decodes_wait_then_throttles() -> None:
    budget = DecodeBudget(total_bytes=100, wait_seconds=0.3)
    with budget.reserve(80):
        started = time.perf_counter()
        with pytest.raises(ThrottlingException, match="Try your call again"), budget.reserve(50):
            pass
        assert 0.25 < time.perf_counter() - started < 2.0
        with budget.reserve(20):  # what fits goes at once
            assert budget.in_use == 100
    order: list[str] = []
    with budget.reserve(100):

        def later(name: str) -> None:
            with budget.reserve(1000):  # more than the whole budget: runs alone
                order.append(name)

        waiter = threading.Thread(target=later, args=("big",))
        waiter.start()
        time.sleep(0.05)
        assert order == []
    waiter.join(5)
    assert order == ["big"] and budget.in_use == 0


MEASURE_FOUR_PNGS = """
import resource, sys, threading
from pipeline.vision.image import decode_image
data = open(sys.argv[1], "rb").read()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
shapes = []
threads = [threading.Thread(target=lambda: shapes.append(decode_image(data, 16 << 20).bgr.shape)) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print(len(shapes), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
"""


FOUR_PNGS = {
    "rgb-80-megapixels": (4882, 16384, 3, np.uint8),  # 233 KB: once 1.3 GB to decode, four 5.3 GB
    "rgba": (5000, 5000, 4, np.uint8),  # once charged 350 MB for 634 MB
    "gray-16-bit": (5000, 8000, 1, np.uint16),  # once charged 260 MB for 469 MB
}


@pytest.mark.parametrize("kind", sorted(FOUR_PNGS))
def test_four_large_pngs_at_once_stay_within_the_decode_budget(kind: str, tmp_path: Path) -> None:
    """Four decodes at once in a fresh process: their peak memory stays under the 1 GiB budget,
    so what the budget charges each mode is at least what its decode holds."""
    height, width, channels, dtype = FOUR_PNGS[kind]
    path = tmp_path / "large.png"
    pixels = np.zeros((height, width, channels), dtype)
    path.write_bytes(cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1])
    assert path.stat().st_size < 300_000
    run = subprocess.run(
        [sys.executable, "-c", MEASURE_FOUR_PNGS, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    decoded, peak_mib = (int(v) for v in run.stdout.split())
    assert decoded == 4
    assert peak_mib < DEFAULT_DECODE_BUDGET_BYTES // (1 << 20), peak_mib
