"""The training path's JPEG decoder gives Pillow's pixels exactly, and leaves to Pillow what it cannot match."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import pytest

from mediatable.training.jpeg import jpeg_pixels


def photo(width: int, height: int, seed: int = 0) -> PIL.Image.Image:
    """Smooth gradients with noise on top: both the low and the high frequencies a camera produces."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / max(width - 1, 1), y * 255 / max(height - 1, 1), (x + y) % 256], axis=-1)
    noisy = base + rng.normal(0, 25, base.shape)
    return PIL.Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def encoded(image: PIL.Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def pillow_pixels(data: bytes) -> np.ndarray:
    return np.asarray(PIL.Image.open(io.BytesIO(data)))


@pytest.mark.parametrize(
    "options",
    [
        {"quality": 75},  # 4:2:0, Pillow's default
        {"quality": 95, "subsampling": 0},  # 4:4:4
        {"quality": 90, "subsampling": 1},  # 4:2:2
        {"quality": 50, "progressive": True},
        {"quality": 85, "optimize": True},
        {"quality": 100, "subsampling": 2, "progressive": True},
    ],
    ids=["420", "444", "422", "progressive", "optimized", "q100-progressive"],
)
@pytest.mark.parametrize("size", [(376, 282), (17, 9), (1, 1), (640, 33)])
def test_colour_jpegs_decode_to_pillows_pixels(options: dict[str, object], size: tuple[int, int]) -> None:
    data = encoded(photo(*size, seed=size[0]), **options)
    pixels = jpeg_pixels(data)
    assert pixels is not None
    expected = pillow_pixels(data)
    assert pixels.dtype == np.uint8 and pixels.shape == expected.shape == (size[1], size[0], 3)
    assert np.array_equal(pixels, expected)
    assert pixels.flags.writeable


def test_what_pillow_decodes_differently_or_refuses_is_left_to_pillow() -> None:
    gray = encoded(photo(20, 10).convert("L"))
    cmyk = encoded(photo(20, 10).convert("CMYK"))
    whole = encoded(photo(64, 64))
    truncated = whole[: len(whole) // 2]
    png = io.BytesIO()
    photo(8, 8).save(png, "PNG")
    for data in (gray, cmyk, truncated, png.getvalue(), b"", b"\xff\xd8not a jpeg"):
        assert jpeg_pixels(data) is None


def test_images_over_the_decompression_bomb_limit_are_left_to_pillow() -> None:
    data = encoded(photo(40, 40))
    limit = PIL.Image.MAX_IMAGE_PIXELS
    PIL.Image.MAX_IMAGE_PIXELS = 1000  # Pillow's own setting, as a user lowers it
    try:
        assert jpeg_pixels(data) is None
        with pytest.warns(PIL.Image.DecompressionBombWarning):
            pillow_pixels(data)  # Pillow, not us, says what happens to such a file
    finally:
        PIL.Image.MAX_IMAGE_PIXELS = limit
    assert jpeg_pixels(data) is not None
