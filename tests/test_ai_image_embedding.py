"""Colour and texture image embeddings (`mt.functions.embed_image`): look-alikes rank above others."""

from __future__ import annotations

import numpy as np
import PIL.Image
import PIL.ImageDraw

import mediatable as mt


def scene(sky: str, ground: str, size: tuple[int, int] = (200, 150), stripes: bool = False) -> PIL.Image.Image:
    img = PIL.Image.new("RGB", size, sky)
    draw = PIL.ImageDraw.Draw(img)
    draw.rectangle((0, size[1] * 2 // 3, size[0], size[1]), fill=ground)
    if stripes:
        for x in range(0, size[0], 8):
            draw.line((x, 0, x, size[1] * 2 // 3), fill="white", width=2)
    return img


def test_look_alikes_rank_above_different_pictures() -> None:
    landscape = scene("skyblue", "forestgreen")
    copies = [landscape.resize((120, 90)), landscape.rotate(3, fillcolor="skyblue"), landscape.crop((8, 6, 196, 146))]
    others = [scene("forestgreen", "skyblue"), scene("orange", "brown"), scene("skyblue", "forestgreen", stripes=True)]
    query = mt.functions.embed_image(landscape)
    assert query.shape == (256,) and np.isclose(np.linalg.norm(query), 1.0)
    copy_scores = [float(query @ mt.functions.embed_image(c)) for c in copies]
    other_scores = [float(query @ mt.functions.embed_image(o)) for o in others]
    assert min(copy_scores) > max(other_scores), (copy_scores, other_scores)
    assert other_scores[0] < copy_scores[0]  # same colours, swapped layout: the layout block tells them apart
