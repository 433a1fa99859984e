"""Perceptual hashes (`imagehash`) and near-duplicate search over them.

`phash(t.image)` is a 64-bit DCT hash as 16 hex digits: resized, recompressed or slightly edited
copies of a picture get hashes a few bits apart, different pictures ~32 bits apart.
`hamming_distance(a, b)` counts differing bits (usable in queries), and :func:`near_duplicates`
groups a whole column's hashes in one vectorized pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mediatable import types as ts
from mediatable.functions.ai._models import model_udf, per_cell, require
from mediatable.functions.ai._pixels import ImageArg, upright_rgb
from mediatable.functions.udf import udf

PACKAGES = {"imagehash": "imagehash"}


def hash_image(image: ImageArg) -> str:
    """The perceptual hash of one image (see :func:`phash`)."""
    imagehash = require("imagehash", "imagehash", "mt.functions.phash")
    return str(imagehash.phash(upright_rgb(image)))


@model_udf(packages=PACKAGES, batch_size=32, returns=ts.String)
def phash(image: list[ts.Image]) -> list[str]:
    """A perceptual hash of images: 16 hex digits; near-identical pictures differ in few bits.

    Examples:
        >>> import PIL.Image
        >>> phash(PIL.Image.new("RGB", (64, 64), "red"))
        '8000000000000000'
        >>> # t.add_computed_column(phash=mt.functions.phash(t.image))
    """
    return per_cell(hash_image, image)


@udf(light=True)
def hamming_distance(a: str, b: str) -> int:
    """Number of bits in which two hex hashes differ.

    Examples:
        >>> hamming_distance("8000000000000000", "8000000000000003")
        2
        >>> # t.where(mt.functions.hamming_distance(t.phash, 'c3d1...') <= 6).collect()
    """
    return (int(a, 16) ^ int(b, 16)).bit_count()


def near_duplicates(hashes: Sequence[str | None], max_distance: int = 6) -> list[list[int]]:
    """Group near-identical pictures by their perceptual hashes.

    Args:
        hashes: one hex hash per row (e.g. `t.select(t.phash).collect()['phash']`); None is skipped.
        max_distance: hashes at most this many bits apart are near-duplicates (6 of 64 catches
            resized and recompressed copies; raise it for edited ones).

    Returns:
        Groups (lists of positions in `hashes`, ascending) of size 2 or more, linked transitively,
        ordered by their first position.

    Examples:
        >>> near_duplicates(["8000000000000000", "ffff00000000ffff", "8000000000000001", None])
        [[0, 2]]
    """
    present = [i for i, h in enumerate(hashes) if h is not None]
    if len(present) < 2:
        return []
    values = np.array([int(hashes[i], 16) for i in present], dtype=np.uint64)  # type: ignore[arg-type]
    parent = list(range(len(present)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(values) - 1):
        close = np.flatnonzero(np.bitwise_count(values[i + 1 :] ^ values[i]) <= max_distance) + i + 1
        for j in close:
            parent[root(int(j))] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(present)):
        groups.setdefault(root(i), []).append(present[i])
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])
