"""Built-in image functions: `t.image.width`, `t.image.resize((128, 128))`, `t.image.entropy()`, ...

Every function here is also a property or method of Image expressions. Called on an expression it
builds a computed value; called on a value it runs at once. The image argument is a `PIL.Image.Image`
(in a table, a lazily opened one: only the header has been read) or, for direct calls, a local path.

The properties `width`, `height`, `mode` and `size` read the header only and never decode pixels,
so they cost microseconds per image. Everything else decodes the image once; a file whose pixels
cannot be decoded (truncated, corrupt) raises :class:`~mediatable.errors.MediaDecodeError`.
Functions that return an image return a new `PIL.Image.Image` and never modify their input.

Examples:
    >>> import PIL.Image
    >>> img = PIL.Image.new("RGB", (64, 48), (255, 0, 0))
    >>> width(img), size(img)
    (64, [64, 48])
    >>> size(resize(img, (32, 24)))
    [32, 24]
"""

from __future__ import annotations

import base64
import enum
import functools
import io
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import PIL.Image
import PIL.ImageEnhance
import PIL.ImageMode
import PIL.ImageOps
import PIL.ImageStat

from mediatable import types as ts
from mediatable.functions._errors import decode_errors
from mediatable.functions.udf import udf

_F = TypeVar("_F", bound=Callable[..., Any])
_E = TypeVar("_E", bound=enum.IntEnum)
ImageArg = PIL.Image.Image | str | os.PathLike[str]
# resize in integer steps first (Image.reduce) down to 3x the target: much faster for large shrinks,
# and indistinguishable from a full-quality resample (Pillow's documentation)
_REDUCING_GAP = 3.0


def _reads_image(*, pixels: bool) -> Callable[[_F], _F]:
    """Let a function take an image or a path, and translate decoder failures in one place.

    A path is opened (header only) and closed after the call. With `pixels`, the image is decoded
    before the function runs, so only decoding errors become MediaDecodeError; errors of the
    function itself (a bad mode name, a mode JPEG cannot store) keep their type.
    """

    def decorate(fn: _F) -> _F:
        @functools.wraps(fn)
        def wrapper(img: ImageArg, *args: Any, **kwargs: Any) -> Any:
            if isinstance(img, PIL.Image.Image):
                return _call(fn, img, pixels, args, kwargs)
            with decode_errors("image", img):
                opened = PIL.Image.open(img)
            with opened:
                return _call(fn, opened, pixels, args, kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def _call(fn: Callable[..., Any], img: PIL.Image.Image, pixels: bool, args: Any, kwargs: Any) -> Any:
    if pixels:
        _load(img)
    return fn(img, *args, **kwargs)


def _load(img: PIL.Image.Image) -> None:
    with decode_errors("image", getattr(img, "filename", None) or None):
        img.load()


def _enum_member(enum_type: type[_E], value: str | int, what: str) -> _E:
    """Accept an enum member, its int value or its name in any case (`'flip_left_right'`)."""
    if isinstance(value, str):
        key = value.strip().upper().replace("-", "_").replace(" ", "_")
        if key in enum_type.__members__:
            return enum_type.__members__[key]
    else:
        try:
            return enum_type(value)
        except ValueError:
            pass
    names = ", ".join(enum_type.__members__)
    raise ValueError(f"unknown {what} {value!r}; use one of {names}")


def _resample(value: str | int | None) -> PIL.Image.Resampling | None:
    return None if value is None else _enum_member(PIL.Image.Resampling, value, "resample filter")


def pair(value: Sequence[int], what: str) -> tuple[int, int]:
    """`value` as a `(width, height)` of positive integers.

    Raises:
        ValueError: not two positive integers; names `what`.

    Examples:
        >>> pair([64, 48], "size")
        (64, 48)
    """
    if len(value) != 2 or any(int(v) != v or v <= 0 for v in value):
        raise ValueError(f"{what} must be two positive integers (width, height), got {value!r}")
    return int(value[0]), int(value[1])


def resize_loaded(img: PIL.Image.Image, size: tuple[int, int]) -> PIL.Image.Image:
    """Decoded pixels resampled to exactly `size` as :func:`resize` does with its default filter.

    Examples:
        >>> resize_loaded(PIL.Image.new("RGB", (64, 48)), (16, 12)).size
        (16, 12)
    """
    return img.resize(size, None, reducing_gap=_REDUCING_GAP)


def _color_bands(img: PIL.Image.Image) -> PIL.Image.Image:
    """The image in a mode whose bands are colors: palette and 1-bit images are expanded."""
    if img.mode in ("P", "PA"):
        has_alpha = img.mode == "PA" or "transparency" in img.info
        return img.convert("RGBA" if has_alpha else "RGB")
    if img.mode == "1":
        return img.convert("L")
    return img


# -- header-only properties -----------------------------------------------------------------------
# `ranged`: in a table, a large remote image is opened from a file over its blocks, so only the
# blocks holding the header are fetched.


@udf(method_of=ts.Image, is_property=True, light=True, ranged=True, header_only=True)
@_reads_image(pixels=False)
def width(img: ts.Image) -> int:
    """The image's width in pixels, read from the header (no decoding).

    Examples:
        >>> width(PIL.Image.new("RGB", (64, 48)))
        64
    """
    return img.width


@udf(method_of=ts.Image, is_property=True, light=True, ranged=True, header_only=True)
@_reads_image(pixels=False)
def height(img: ts.Image) -> int:
    """The image's height in pixels, read from the header (no decoding).

    Examples:
        >>> height(PIL.Image.new("RGB", (64, 48)))
        48
    """
    return img.height


@udf(method_of=ts.Image, is_property=True, light=True, ranged=True, header_only=True)
@_reads_image(pixels=False)
def mode(img: ts.Image) -> str:
    """The Pillow mode (`'RGB'`, `'RGBA'`, `'L'`, `'P'`, ...), read from the header.

    Examples:
        >>> mode(PIL.Image.new("L", (4, 4)))
        'L'
    """
    return img.mode


@udf(method_of=ts.Image, is_property=True, light=True, ranged=True, header_only=True)
@_reads_image(pixels=False)
def size(img: ts.Image) -> list[int]:
    """`[width, height]` in pixels, read from the header.

    Examples:
        >>> size(PIL.Image.new("RGB", (64, 48)))
        [64, 48]
    """
    return [img.width, img.height]


# -- geometry ---------------------------------------------------------------------------------------


@udf(method_of=ts.Image)
@_reads_image(pixels=False)
def resize(img: ts.Image, size: tuple[int, int] | list[int], resample: str | int | None = None) -> ts.Image:
    """Resize to exactly `size`, ignoring the aspect ratio (see :func:`thumbnail` to keep it).

    A JPEG shrunk to half its size or less is decoded at a reduced scale (libjpeg's DCT scaling):
    the result has exactly `size` and differs from a full decode by well under one level per pixel.

    Args:
        img: the image.
        size: `(width, height)` in pixels.
        resample: filter name (`'nearest'`, `'bilinear'`, `'bicubic'`, `'lanczos'`, ...);
            default Pillow's (bicubic).

    Returns:
        A new image of that size.

    Examples:
        >>> resize(PIL.Image.new("RGB", (64, 48)), (10, 20)).size
        (10, 20)
    """
    target = pair(size, "size")
    resampling = _resample(resample)
    return _decode_for(img, target, resampling).resize(target, resampling, reducing_gap=_REDUCING_GAP)


@udf(method_of=ts.Image)
@_reads_image(pixels=False)
def thumbnail(img: ts.Image, size: tuple[int, int] | list[int], resample: str | int | None = None) -> ts.Image:
    """Shrink to fit within `size`, keeping the aspect ratio; never enlarges.

    Unlike `PIL.Image.Image.thumbnail`, the input is left untouched. JPEGs are decoded at a reduced
    scale when that is at least as large as the result, as in :func:`resize`.

    Args:
        img: the image.
        size: the bounding box `(width, height)`.
        resample: filter name; default Pillow's (bicubic).

    Returns:
        A new image no larger than `size`.

    Examples:
        >>> thumbnail(PIL.Image.new("RGB", (640, 480)), (128, 128)).size
        (128, 96)
        >>> thumbnail(PIL.Image.new("RGB", (64, 48)), (128, 128)).size
        (64, 48)
    """
    box_w, box_h = pair(size, "size")
    scale = min(box_w / img.width, box_h / img.height, 1.0)
    target = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    resampling = _resample(resample)
    return _decode_for(img, target, resampling).resize(target, resampling, reducing_gap=_REDUCING_GAP)


def _decode_for(
    img: PIL.Image.Image, size: tuple[int, int], resample: PIL.Image.Resampling | None = None
) -> PIL.Image.Image:
    """The decoded pixels of `img`, at the smallest reduced scale still at least `size` when that is cheaper.

    A JPEG not yet decoded is decoded with libjpeg's DCT scaling (Pillow's draft mode: 1/2, 1/4 or
    1/8 of each side) into a fresh image of its own, so `img` itself stays as it was (only its header
    has been read); anything else, or with `resample='nearest'`, is decoded in full. Either way the
    image is decoded once.

    Raises:
        MediaDecodeError: the pixels cannot be decoded.
    """
    filename = getattr(img, "filename", None)
    reducible = (
        img.format == "JPEG"
        and filename
        and img.tile  # not decoded yet
        and resample != PIL.Image.Resampling.NEAREST
        and (img.width >= 2 * size[0] and img.height >= 2 * size[1])
    )
    if not reducible:
        _load(img)
        return img
    with decode_errors("image", filename):
        reduced = PIL.Image.open(filename)
        try:
            reduced.draft(None, size)
            reduced.load()  # closes the file (Pillow opened it)
        except BaseException:
            reduced.close()
            raise
    return reduced


@udf(method_of=ts.Image)
@_reads_image(pixels=True)
def rotate(img: ts.Image, angle: float, expand: bool = False) -> ts.Image:
    """Rotate counter-clockwise by `angle` degrees.

    Args:
        img: the image.
        angle: degrees, counter-clockwise.
        expand: grow the output to hold the whole rotated image (otherwise: same size, corners cut).

    Returns:
        A new image; uncovered areas are black (transparent with an alpha band).

    Examples:
        >>> rotate(PIL.Image.new("RGB", (64, 48)), 90, expand=True).size
        (48, 64)
    """
    return img.rotate(angle, expand=expand)


@udf(method_of=ts.Image)
@_reads_image(pixels=True)
def crop(img: ts.Image, box: tuple[int, int, int, int] | list[int]) -> ts.Image:
    """Cut out the rectangle `box = (left, upper, right, lower)`; right and lower are exclusive.

    Examples:
        >>> crop(PIL.Image.new("RGB", (64, 48)), (0, 0, 10, 5)).size
        (10, 5)
    """
    if len(box) != 4:
        raise ValueError(f"box must be (left, upper, right, lower), got {box!r}")
    left, upper, right, lower = box
    return img.crop((left, upper, right, lower))


@udf(method_of=ts.Image)
@_reads_image(pixels=True)
def transpose(img: ts.Image, method: str | int) -> ts.Image:
    """Flip or rotate by multiples of 90 degrees, losslessly.

    Args:
        img: the image.
        method: `'FLIP_LEFT_RIGHT'`, `'FLIP_TOP_BOTTOM'`, `'ROTATE_90'`, `'ROTATE_180'`,
            `'ROTATE_270'`, `'TRANSPOSE'` or `'TRANSVERSE'` (any case), or a `PIL.Image.Transpose`.

    Returns:
        A new image.

    Raises:
        ValueError: unknown method.

    Examples:
        >>> transpose(PIL.Image.new("RGB", (64, 48)), "rotate_90").size
        (48, 64)
    """
    return img.transpose(_enum_member(PIL.Image.Transpose, method, "transpose method"))


# -- color ------------------------------------------------------------------------------------------


@udf(method_of=ts.Image)
@_reads_image(pixels=True)
def convert(img: ts.Image, mode: str) -> ts.Image:
    """Convert to another Pillow mode (`'RGB'`, `'L'`, `'RGBA'`, `'1'`, ...).

    Examples:
        >>> convert(PIL.Image.new("RGB", (4, 4)), "L").mode
        'L'
    """
    return img.convert(mode)


@udf(method_of=ts.Image)
@_reads_image(pixels=True)
def grayscale(img: ts.Image) -> ts.Image:
    """Convert to 8-bit grayscale (mode `'L'`, ITU-R 601-2 luma).

    Examples:
        >>> grayscale(PIL.Image.new("RGB", (4, 4), (255, 0, 0))).getpixel((0, 0))
        76
    """
    return img.convert("L")


@udf(method_of=ts.Image)
@_reads_image(pixels=True)
def invert(img: ts.Image) -> ts.Image:
    """Invert colors (`255 - v` per band); an alpha band is kept as is.

    Palette images are expanded to RGB(A) first.

    Raises:
        ValueError: the mode has no meaningful inversion (e.g. 32-bit `'I'` or `'F'`).

    Examples:
        >>> invert(PIL.Image.new("RGBA", (4, 4), (255, 0, 10, 128))).getpixel((0, 0))
        (0, 255, 245, 128)
    """
    image = _color_bands(img)
    if PIL.ImageMode.getmode(image.mode).typestr != "|u1":
        raise ValueError(f"invert needs an 8-bit image, not mode {image.mode!r}; convert it first")
    bands = image.getbands()
    if "A" in bands:  # keep transparency: invert the color bands only
        *colors, alpha = image.split()
        return PIL.Image.merge(image.mode, [PIL.ImageOps.invert(c) for c in colors] + [alpha])
    return image.point(list(range(255, -1, -1)) * len(bands))


@udf(method_of=ts.Image)
@_reads_image(pixels=True)
def brightness_adjust(img: ts.Image, factor: float) -> ts.Image:
    """Scale brightness: 0.0 gives black, 1.0 the original, 2.0 twice as bright (clipped).

    Examples:
        >>> brightness_adjust(PIL.Image.new("L", (4, 4), 100), 0.5).getpixel((0, 0))
        50
    """
    return PIL.ImageEnhance.Brightness(img).enhance(factor)


@udf(method_of=ts.Image)
@_reads_image(pixels=True)
def contrast_adjust(img: ts.Image, factor: float) -> ts.Image:
    """Scale contrast around the mean gray: 0.0 gives a flat gray image, 1.0 the original.

    Examples:
        >>> contrast_adjust(PIL.Image.new("L", (4, 4), 100), 0.0).getpixel((0, 0))
        100
    """
    return PIL.ImageEnhance.Contrast(img).enhance(factor)


# -- statistics -------------------------------------------------------------------------------------


@udf(method_of=ts.Image)
@_reads_image(pixels=True)
def histogram(img: ts.Image, bins: int = 256) -> list[list[int]]:
    """Pixel counts per value, one list of `bins` counts per band (palette images as RGB).

    Args:
        img: an 8-bit image (modes `L`, `RGB`, `RGBA`, `P`, ...).
        bins: number of equal-width bins over 0..255; must divide 256.

    Returns:
        `[[count, ...] per band]`; each band's counts sum to width * height.

    Raises:
        ValueError: `bins` does not divide 256, or the image is not 8-bit.

    Examples:
        >>> histogram(PIL.Image.new("L", (4, 4), 200), bins=4)
        [[0, 0, 0, 16]]
    """
    if bins <= 0 or 256 % bins:
        raise ValueError(f"bins must divide 256 (1, 2, 4, ..., 256), got {bins}")
    image = _color_bands(img)
    if PIL.ImageMode.getmode(image.mode).typestr != "|u1":
        raise ValueError(f"histogram needs an 8-bit image, not mode {image.mode!r}; convert it first")
    counts = image.histogram()
    width = 256 // bins
    return [
        [sum(counts[band * 256 + b * width : band * 256 + (b + 1) * width]) for b in range(bins)]
        for band in range(len(image.getbands()))
    ]


@udf(method_of=ts.Image)
@_reads_image(pixels=True)
def entropy(img: ts.Image) -> float:
    """Shannon entropy in bits of Pillow's histogram, whose bins pool all bands (768 for RGB).

    A one-color grayscale image gives 0.0 and uniform noise 8.0; a one-color RGB image whose three
    bands differ gives log2(3), since its pooled histogram has three filled bins.

    Examples:
        >>> entropy(PIL.Image.new("L", (4, 4), 7))
        0.0
    """
    return float(img.entropy()) + 0.0  # + 0.0 turns Pillow's -0.0 into 0.0


@udf(method_of=ts.Image)
@_reads_image(pixels=True)
def mean_color(img: ts.Image) -> list[float]:
    """The mean value of each band, e.g. `[r, g, b]` (palette images as RGB).

    Examples:
        >>> mean_color(PIL.Image.new("RGB", (4, 4), (10, 20, 30)))
        [10.0, 20.0, 30.0]
    """
    return [float(v) for v in PIL.ImageStat.Stat(_color_bands(img)).mean]


@udf(method_of=ts.Image)
@_reads_image(pixels=True)
def getextrema(img: ts.Image) -> list[list[float]]:
    """`[min, max]` of each band, always one pair per band (palette images as RGB).

    Examples:
        >>> getextrema(PIL.Image.new("L", (4, 4), 9))
        [[9, 9]]
    """
    image = _color_bands(img)
    extrema = image.getextrema()
    pairs = [extrema] if len(image.getbands()) == 1 else extrema  # Pillow drops the nesting for one band
    return [list(pair) for pair in pairs]


@udf(method_of=ts.Image, returns=ts.Json)
@_reads_image(pixels=True)
def getpixel(img: ts.Image, xy: tuple[int, int] | list[int]) -> int | float | list[int | float]:
    """The value at `xy = (x, y)`: a number for single-band images, a list per band otherwise.

    Raises:
        IndexError: `xy` lies outside the image.

    Examples:
        >>> getpixel(PIL.Image.new("RGB", (4, 4), (1, 2, 3)), (0, 0))
        [1, 2, 3]
    """
    x, y = xy
    value = img.getpixel((x, y))
    return list(value) if isinstance(value, tuple) else value  # type: ignore[return-value]


# -- encoding ---------------------------------------------------------------------------------------


@udf(method_of=ts.Image)
@_reads_image(pixels=True)
def b64_encode(img: ts.Image, format: str = "png") -> str:
    """Encode the image in `format` (`'png'`, `'jpeg'`, `'webp'`, ...) as base64 text.

    For JPEG, modes it cannot store (RGBA, P, ...) are converted to RGB first.

    Examples:
        >>> b64_encode(PIL.Image.new("L", (1, 1)))[:12]
        'iVBORw0KGgoA'
    """
    pil_format = PIL.Image.registered_extensions().get("." + format.lower().lstrip("."), format.upper())
    image = img
    if pil_format == "JPEG" and img.mode not in ("L", "RGB", "CMYK"):
        image = img.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=pil_format)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
