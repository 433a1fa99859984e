"""Images as models see them: decoded, turned upright by their EXIF orientation, in RGB.

A phone photo stores its pixels sideways plus an EXIF tag saying how to turn them; viewers apply the
tag, so every model here does too, and boxes and text come out in the frame a person sees.
"""

from __future__ import annotations

import os

import PIL.Image
import PIL.ImageOps

from mediatable.functions._errors import decode_errors

ImageArg = PIL.Image.Image | str | os.PathLike[str]


def upright_rgb(image: ImageArg) -> PIL.Image.Image:
    """The image decoded, rotated/flipped as its EXIF orientation says, in RGB mode.

    Args:
        image: a PIL image (as a table passes it) or a local path.

    Raises:
        MediaDecodeError: the pixels cannot be decoded.

    Examples:
        >>> img = PIL.Image.new("L", (40, 20))
        >>> exif = img.getexif()
        >>> exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
        >>> img.info["exif"] = exif.tobytes()
        >>> up = upright_rgb(img)
        >>> up.size, up.mode
        ((20, 40), 'RGB')
    """
    source = image if not isinstance(image, PIL.Image.Image) else (getattr(image, "filename", None) or None)
    with decode_errors("image", source):
        opened = image if isinstance(image, PIL.Image.Image) else PIL.Image.open(image)
        opened.load()
        upright = PIL.ImageOps.exif_transpose(opened)
    if upright.mode != "RGB":
        upright = upright.convert("RGBA").convert("RGB") if "transparency" in upright.info else upright.convert("RGB")
    return upright
