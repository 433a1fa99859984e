"""Tests of mediatable.functions.image on generated images."""

from __future__ import annotations

import base64
import doctest
import io
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

import mediagen
from mediatable import types as ts
from mediatable.errors import MediaDecodeError, MediaNotFound
from mediatable.exprs import CellError, FunctionCall
from mediatable.exprs.methods import lookup_method
from mediatable.functions import image
from mediatable.functions.udf import Function

RED = (200, 30, 30)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("images")
    return {
        "jpeg": mediagen.make_jpeg(folder / "red.jpg", size=(160, 120), color=RED),
        "png": mediagen.make_png(folder / "green.png", size=(64, 48), color=(30, 200, 30)),
        "rgba": mediagen.make_png(folder / "rgba.png", size=(8, 6), color=(10, 20, 30, 128), mode="RGBA"),
        "noise": mediagen.make_png(folder / "noise.png", size=(160, 120), noise=True, mode="L"),
        "truncated": mediagen.make_truncated_jpeg(folder / "truncated.jpg"),
        "corrupt": mediagen.make_corrupt_jpeg(folder / "corrupt.jpg"),
    }


def two_colors() -> PIL.Image.Image:
    """A 4x2 RGB image: left half black, right half white."""
    img = PIL.Image.new("RGB", (4, 2), (0, 0, 0))
    img.paste((255, 255, 255), (2, 0, 4, 2))
    return img


# -- header-only properties -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [("jpeg", (160, 120, "RGB")), ("png", (64, 48, "RGB")), ("rgba", (8, 6, "RGBA")), ("noise", (160, 120, "L"))],
)
def test_properties(media: dict[str, Path], key: str, expected: tuple[int, int, str]) -> None:
    w, h, mode = expected
    with PIL.Image.open(media[key]) as img:
        assert (image.width(img), image.height(img), image.mode(img), image.size(img)) == (w, h, mode, [w, h])
    # direct calls also take a path
    assert (image.width(media[key]), image.size(str(media[key]))) == (w, [w, h])


def test_properties_read_the_header_only(media: dict[str, Path]) -> None:
    with PIL.Image.open(media["jpeg"]) as img:
        for prop in (image.width, image.height, image.mode, image.size):
            prop(img)
        assert img.tile, "pixels were decoded"  # Pillow clears .tile when it decodes
        assert img._im is None  # no pixel memory allocated
    # a file whose pixels are broken still gives its header values
    assert image.size(media["truncated"]) == [160, 120]


def test_property_types() -> None:
    assert [f.return_type for f in (image.width, image.height, image.mode, image.size)] == [
        ts.Int,
        ts.Int,
        ts.String,
        ts.Json,
    ]


# -- geometry -----------------------------------------------------------------------------------------


def test_resize(media: dict[str, Path]) -> None:
    with PIL.Image.open(media["jpeg"]) as img:
        out = image.resize(img, (32, 20))
        assert out.size == (32, 20)
        assert image.resize(img, [10, 10], resample="nearest").size == (10, 10)
        assert img.size == (160, 120)
    with pytest.raises(ValueError, match="two positive integers"):
        image.resize(media["jpeg"], (0, 10))
    with pytest.raises(ValueError, match="unknown resample filter 'fuzzy'"):
        image.resize(media["jpeg"], (10, 10), resample="fuzzy")


@pytest.mark.parametrize(("box", "expected"), [((64, 64), (64, 48)), ((100, 30), (40, 30)), ((1000, 1000), (160, 120))])
def test_thumbnail_keeps_aspect_and_never_enlarges(
    media: dict[str, Path], box: tuple[int, int], expected: tuple[int, int]
) -> None:
    with PIL.Image.open(media["jpeg"]) as img:
        assert image.thumbnail(img, box).size == expected
        assert img.size == (160, 120)  # the input is untouched (PIL's own thumbnail works in place)


# Bound on the mean absolute difference (0-255 scale, per channel) between a result computed from a
# reduced-scale JPEG decode and the same result from a full decode; measured ~0.3-0.7 on photo-like images.
REDUCED_DECODE_MAD = 2.0


def full_decode_result(path: Path, size: tuple[int, int], fit: bool) -> PIL.Image.Image:
    """The reference: decode every pixel, then resample as the functions do."""
    with PIL.Image.open(path) as img:
        img.load()
        target = image.thumbnail(img, size).size if fit else size
        return img.resize(target, PIL.Image.Resampling.BICUBIC, reducing_gap=3.0)


@pytest.mark.parametrize(
    ("source", "size", "fit"),
    [
        ((640, 480), (224, 224), False),
        ((1920, 1080), (224, 224), False),
        ((1920, 1080), (640, 360), False),
        ((640, 480), (128, 128), True),
        ((1600, 1200), (300, 300), True),
        ((1000, 750), (333, 250), False),
    ],
)
def test_downscales_decode_jpeg_at_reduced_scale(
    tmp_path: Path, source: tuple[int, int], size: tuple[int, int], fit: bool
) -> None:
    path = mediagen.make_photo_jpeg(tmp_path / "photo.jpg", source)
    function = image.thumbnail if fit else image.resize
    with PIL.Image.open(path) as img:
        out = function(img, size)
        assert img.tile and img.size == source  # the argument was neither decoded nor changed
    reference = full_decode_result(path, size, fit)
    assert out.size == reference.size  # identical size
    difference = np.abs(np.asarray(out, dtype=np.int16) - np.asarray(reference, dtype=np.int16)).mean()
    assert 0 < difference < REDUCED_DECODE_MAD, difference  # not the full decode, and close to it


def test_reduced_decoding_only_where_it_is_exact_in_size(tmp_path: Path, media: dict[str, Path]) -> None:
    photo = mediagen.make_photo_jpeg(tmp_path / "photo.jpg", (640, 480))
    # nearest-neighbour, upscales, small shrinks, PNGs and decoded images: a plain full decode
    for source, size, resample in [(photo, (64, 48), "nearest"), (photo, (1280, 960), None), (photo, (400, 300), None)]:
        with PIL.Image.open(source) as img:
            out = image.resize(img, size, resample=resample)
            assert out.size == size
            reference = full_decode_result(source, size, fit=False) if resample is None else None
            if reference is not None:
                assert np.array_equal(np.asarray(out), np.asarray(reference))
    assert image.resize(media["png"], (16, 12)).size == (16, 12)
    decoded = PIL.Image.open(photo)
    decoded.load()
    assert image.thumbnail(decoded, (64, 64)).size == (64, 48)
    decoded.close()
    # a truncated JPEG still fails as a decode error naming the file
    with pytest.raises(MediaDecodeError, match="truncated"):
        image.resize(media["truncated"], (40, 30))


def test_rotate() -> None:
    img = two_colors()
    assert image.rotate(img, 90).size == (4, 2)
    turned = image.rotate(img, 90, expand=True)
    assert turned.size == (2, 4)
    # counter-clockwise: the white right half ends up on top
    assert turned.getpixel((0, 0)) == (255, 255, 255)
    assert turned.getpixel((0, 3)) == (0, 0, 0)


def test_crop() -> None:
    out = image.crop(two_colors(), (1, 0, 3, 2))
    assert out.size == (2, 2)
    assert [out.getpixel((0, 0)), out.getpixel((1, 0))] == [(0, 0, 0), (255, 255, 255)]
    with pytest.raises(ValueError, match="left, upper, right, lower"):
        image.crop(two_colors(), (1, 2, 3))


@pytest.mark.parametrize("method", ["FLIP_LEFT_RIGHT", "flip_left_right", "flip-left-right", 0])
def test_transpose_accepts_names(method: str | int) -> None:
    out = image.transpose(two_colors(), method)
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((3, 0)) == (0, 0, 0)


def test_transpose_enum_and_bad_name() -> None:
    assert image.transpose(two_colors(), PIL.Image.Transpose.ROTATE_90).size == (2, 4)
    with pytest.raises(ValueError, match=r"unknown transpose method .SIDEWAYS.*FLIP_TOP_BOTTOM"):
        image.transpose(two_colors(), "SIDEWAYS")


# -- color ----------------------------------------------------------------------------------------


def test_convert_and_grayscale(media: dict[str, Path]) -> None:
    with PIL.Image.open(media["png"]) as img:
        assert image.convert(img, "RGBA").mode == "RGBA"
        gray = image.grayscale(img)
    assert gray.mode == "L"
    # ITU-R 601-2 luma of (30, 200, 30): 0.299*30 + 0.587*200 + 0.114*30
    assert gray.getpixel((0, 0)) == 130


def test_invert() -> None:
    assert image.invert(PIL.Image.new("RGB", (2, 2), (0, 100, 255))).getpixel((1, 1)) == (255, 155, 0)
    assert image.invert(PIL.Image.new("L", (2, 2), 5)).getpixel((0, 0)) == 250
    assert image.invert(PIL.Image.new("RGBA", (2, 2), (0, 100, 255, 7))).getpixel((0, 0)) == (255, 155, 0, 7)
    palette = PIL.Image.new("RGB", (2, 2), (0, 100, 255)).convert("P", palette=PIL.Image.Palette.ADAPTIVE)
    assert image.invert(palette).getpixel((0, 0)) == (255, 155, 0)
    with pytest.raises(ValueError, match="8-bit"):
        image.invert(PIL.Image.new("F", (2, 2)))


def test_brightness_and_contrast() -> None:
    gray = PIL.Image.new("L", (4, 4), 100)
    assert image.brightness_adjust(gray, 0.0).getpixel((0, 0)) == 0
    assert image.brightness_adjust(gray, 0.5).getpixel((0, 0)) == 50
    assert image.brightness_adjust(gray, 3.0).getpixel((0, 0)) == 255
    assert image.contrast_adjust(two_colors(), 0.0).getpixel((0, 0)) == image.contrast_adjust(
        two_colors(), 0.0
    ).getpixel((3, 0))


# -- statistics -------------------------------------------------------------------------------------


def test_histogram(media: dict[str, Path]) -> None:
    with PIL.Image.open(media["png"]) as img:
        bands = image.histogram(img)
    assert len(bands) == 3
    assert all(len(band) == 256 and sum(band) == 64 * 48 for band in bands)
    assert [band.index(64 * 48) for band in bands] == [30, 200, 30]
    assert image.histogram(PIL.Image.new("L", (4, 4), 200), bins=4) == [[0, 0, 0, 16]]
    with pytest.raises(ValueError, match="divide 256"):
        image.histogram(media["png"], bins=3)


def test_entropy(media: dict[str, Path]) -> None:
    assert image.entropy(PIL.Image.new("L", (4, 4), 7)) == 0.0
    assert image.entropy(media["png"]) == pytest.approx(np.log2(3))  # bins R=30, G=200, B=30 pooled
    assert image.entropy(media["noise"]) == pytest.approx(8.0, abs=0.02)  # uniform random bytes


def test_mean_color_and_extrema(media: dict[str, Path]) -> None:
    assert image.mean_color(media["png"]) == [30.0, 200.0, 30.0]
    assert image.mean_color(media["rgba"]) == [10.0, 20.0, 30.0, 128.0]
    assert image.getextrema(media["png"]) == [[30, 30], [200, 200], [30, 30]]
    with PIL.Image.open(media["noise"]) as img:
        pixels = np.asarray(img)
        assert image.getextrema(img) == [[int(pixels.min()), int(pixels.max())]]
        assert image.mean_color(img) == [pytest.approx(float(pixels.mean()))]
    palette = PIL.Image.new("RGB", (2, 2), (1, 2, 3)).convert("P", palette=PIL.Image.Palette.ADAPTIVE)
    assert image.mean_color(palette) == [1.0, 2.0, 3.0]


def test_getpixel(media: dict[str, Path]) -> None:
    assert image.getpixel(media["png"], (5, 5)) == [30, 200, 30]
    assert image.getpixel(PIL.Image.new("L", (2, 2), 9), [1, 1]) == 9
    assert image.getpixel.return_type == ts.Json
    with pytest.raises(IndexError):
        image.getpixel(media["png"], (64, 0))


# -- encoding ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "magic"), [("png", b"\x89PNG"), ("jpeg", b"\xff\xd8"), ("JPG", b"\xff\xd8")])
def test_b64_encode(media: dict[str, Path], fmt: str, magic: bytes) -> None:
    text = image.b64_encode(media["rgba"], format=fmt)  # JPEG cannot hold alpha: converted to RGB
    data = base64.b64decode(text)
    assert data.startswith(magic)
    with PIL.Image.open(io.BytesIO(data)) as decoded:
        assert decoded.size == (8, 6)


def test_b64_encode_png_round_trips_pixels(media: dict[str, Path]) -> None:
    with PIL.Image.open(io.BytesIO(base64.b64decode(image.b64_encode(media["rgba"])))) as decoded:
        assert decoded.mode == "RGBA"
        assert decoded.getpixel((0, 0)) == (10, 20, 30, 128)


# -- decode errors ----------------------------------------------------------------------------------

PIXEL_CALLS = [
    (image.resize, ((10, 10),)),
    (image.thumbnail, ((10, 10),)),
    (image.rotate, (90,)),
    (image.crop, ((0, 0, 5, 5),)),
    (image.convert, ("L",)),
    (image.transpose, ("ROTATE_90",)),
    (image.grayscale, ()),
    (image.invert, ()),
    (image.brightness_adjust, (1.5,)),
    (image.contrast_adjust, (1.5,)),
    (image.histogram, ()),
    (image.entropy, ()),
    (image.mean_color, ()),
    (image.getextrema, ()),
    (image.getpixel, ((0, 0),)),
    (image.b64_encode, ()),
]


@pytest.mark.parametrize(("function", "args"), PIXEL_CALLS, ids=[f.__name__ for f, _ in PIXEL_CALLS])
def test_truncated_image_raises_decode_error(media: dict[str, Path], function: Function, args: tuple) -> None:
    with (
        PIL.Image.open(media["truncated"]) as img,
        pytest.raises(MediaDecodeError, match="image file is truncated") as info,
    ):
        function(img, *args)
    assert "truncated.jpg" in str(info.value)
    assert isinstance(info.value.__cause__, OSError)


def test_corrupt_and_missing_files(media: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MediaDecodeError, match=r"cannot decode image .*corrupt\.jpg"):
        image.width(media["corrupt"])
    with pytest.raises(MediaNotFound):
        image.width(tmp_path / "missing.jpg")


def test_errors_of_the_caller_keep_their_type(media: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="wrong mode"):
        image.convert(media["png"], "NOPE")


# -- expressions ----------------------------------------------------------------------------------

ALL = [f for f, _ in PIXEL_CALLS] + [image.width, image.height, image.mode, image.size]


@pytest.mark.parametrize("function", ALL, ids=[f.__name__ for f in ALL])
def test_registered_as_image_methods(function: Function) -> None:
    registered, is_property = lookup_method("Image", function.__name__)
    assert registered is function
    assert is_property == (function.__name__ in ("width", "height", "mode", "size"))
    assert function.param_types["img"] == ts.Image


def test_expressions_build_function_calls(media: dict[str, Path]) -> None:
    col = mediagen.column("image", ts.Image)
    width, rotated = col.width, col.rotate(90, expand=True)
    assert isinstance(width, FunctionCall) and width.col_type == ts.Int
    assert isinstance(rotated, FunctionCall) and rotated.col_type == ts.Image
    assert image.resize(col, (4, 4)).col_type == ts.Image  # module functions accept expressions too
    rows = [{"image": str(media["jpeg"])}, {"image": None}, {"image": str(media["truncated"])}]
    assert mediagen.evaluate(width, rows) == [160, None, 160]
    sizes = mediagen.evaluate(rotated.size, rows)
    assert sizes[:2] == [[120, 160], None]
    assert isinstance(sizes[2], CellError) and sizes[2].errortype == "MediaDecodeError"


def test_docstring_examples_run() -> None:
    assert doctest.testmod(image).failed == 0
