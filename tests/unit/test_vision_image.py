"""Image intake: formats, limits and conversions, each with the Rekognition error users get."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.errors import ImageTooLargeException, InvalidImageFormatException, InvalidParameterException
from pipeline.vision.image import MIN_SIDE, decode_image

LIMIT = 5 * 1024 * 1024


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
