"""Image embeddings for look-alike search from colour and texture (no learned model; numpy only).

No CLIP-style image model ships inside a PyPI wheel, so `embed_image` describes what can be
measured directly, on a 64x64 copy of the upright image:

- colour: a joint HSV histogram (8 hue x 4 saturation x 4 value bins, 128 values);
- layout: the mean RGB of a 4x4 grid (48 values), so "blue above, green below" differs from the reverse;
- texture: gradient orientations (16 bins) in each quarter of the image, weighted by edge strength
  (64 values), and a histogram of edge strengths (16 values).

Histograms are square-rooted (the Hellinger trick: dot products then compare distributions well),
each block is scaled to unit length and weighted, and the whole 256-d vector has unit length, so
cosine similarity is a dot product. It finds resized, recompressed, lightly cropped or retouched
copies and pictures of similar colour and texture; it does not know what is in a picture (a red
car and a red apple can be close), and it cannot be searched by text.
"""

from __future__ import annotations

import numpy as np
import PIL.Image

from mediatable import types as ts
from mediatable.functions.ai._models import model_udf, per_cell
from mediatable.functions.ai._pixels import ImageArg, upright_rgb

DIMENSIONS = 256
_SIZE = 64
_WEIGHTS = {"colour": 1.0, "layout": 0.7, "orientation": 0.7, "strength": 0.5}


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def features(image: ImageArg) -> np.ndarray:
    """The 256-d colour and texture vector of one image (see :func:`embed_image`)."""
    small = upright_rgb(image).resize((_SIZE, _SIZE), PIL.Image.Resampling.BILINEAR)
    rgb = np.asarray(small, dtype=np.float32) / 255.0
    hsv = np.asarray(small.convert("HSV"), dtype=np.int32)
    bins = (hsv[..., 0] * 8 // 256) * 16 + (hsv[..., 1] * 4 // 256) * 4 + hsv[..., 2] * 4 // 256
    colour = np.sqrt(np.bincount(bins.ravel(), minlength=128) / bins.size)
    layout = rgb.reshape(4, _SIZE // 4, 4, _SIZE // 4, 3).mean(axis=(1, 3)).ravel()

    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    gy, gx = np.gradient(gray)
    strength = np.hypot(gx, gy)
    angle = ((np.arctan2(gy, gx) % np.pi) / np.pi * 16).astype(np.int32) % 16
    half = _SIZE // 2
    quarters = [(slice(r, r + half), slice(c, c + half)) for r in (0, half) for c in (0, half)]
    orientation = np.concatenate(
        [np.bincount(angle[q].ravel(), weights=strength[q].ravel(), minlength=16) for q in quarters]
    )
    orientation = np.sqrt(orientation / max(float(orientation.sum()), 1e-9))
    edges = np.sqrt(np.histogram(strength, bins=16, range=(0.0, 0.5))[0] / strength.size)

    blocks = {"colour": colour, "layout": layout, "orientation": orientation, "strength": edges}
    vector = np.concatenate([_WEIGHTS[name] * _unit(block.astype(np.float64)) for name, block in blocks.items()])
    return _unit(vector)


@model_udf(batch_size=32, returns=ts.Array(ts.Float, (DIMENSIONS,)))
def embed_image(image: list[ts.Image]) -> list[np.ndarray]:
    """Embed images as 256-d unit vectors of colour and texture, for look-alike search.

    Examples:
        >>> import PIL.Image, PIL.ImageDraw
        >>> def picture(colour, size):
        ...     img = PIL.Image.new("RGB", size, "white")
        ...     PIL.ImageDraw.Draw(img).ellipse((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), fill=colour)
        ...     return img
        >>> red, red_small, blue = embed_image(picture("red", (200, 200))), embed_image(picture("red", (90, 90))), \\
        ...     embed_image(picture("blue", (200, 200)))
        >>> red.shape, bool(red @ red_small > red @ blue)
        ((256,), True)
        >>> # t.add_embedding_index('image', embedding=mt.functions.embed_image)
    """
    return per_cell(features, image)
