"""Perceptual hashes and near-duplicates (`phash`, `hamming_distance`, `near_duplicates`) over remote images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

import mediatable as mt
from servers.http import FaultServer


def picture(seed: int, size: tuple[int, int] = (240, 180)) -> PIL.Image.Image:
    """A smooth random picture: coarse blocks upscaled, so it survives resizing like a photo."""
    coarse = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return PIL.Image.fromarray(coarse).resize(size, PIL.Image.Resampling.BICUBIC)


def jpeg(img: PIL.Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture
def home(clean_env: Path) -> Path:
    mt.init(home=clean_env, quiet=True)
    return clean_env


def test_near_duplicates_group_resized_and_recompressed_copies(home: Path, http_server: FaultServer) -> None:
    a, b = picture(1), picture(2)
    files = {
        "a.jpg": jpeg(a),
        "b.jpg": jpeg(b),
        "a_small.jpg": jpeg(a.resize((120, 90)), quality=60),  # resized and recompressed copy of a
        "c.jpg": jpeg(picture(3)),
        "b_big.png": b"",  # replaced below: an upscaled PNG copy of b
    }
    buffer = io.BytesIO()
    b.resize((480, 360)).save(buffer, "PNG")
    files["b_big.png"] = buffer.getvalue()
    t = mt.create_table("pics", {"image": mt.Image, "name": mt.String})
    t.insert([{"image": http_server.put(f"dup/{n}", data), "name": n} for n, data in files.items()], quiet=True)

    t.add_computed_column(phash=mt.functions.phash(t.image), quiet=True)

    rows = t.order_by(t.name).select(t.name, t.phash).collect()
    assert all(len(h) == 16 and int(h, 16) >= 0 for h in rows["phash"])
    groups = mt.functions.near_duplicates(rows["phash"], max_distance=6)
    assert [[rows["name"][i] for i in g] for g in groups] == [["a.jpg", "a_small.jpg"], ["b.jpg", "b_big.png"]]
    h = dict(zip(rows["name"], rows["phash"], strict=True))
    assert mt.functions.hamming_distance(h["a.jpg"], h["c.jpg"]) > 12
    close = t.where(mt.functions.hamming_distance(t.phash, h["a.jpg"]) <= 6).order_by(t.name).select(t.name)
    assert close.collect()["name"] == ["a.jpg", "a_small.jpg"]


def test_near_duplicates_links_transitively_and_skips_missing() -> None:
    hashes = ["0000000000000000", "0000000000000007", None, "000000000000003f", "ffffffffffffffff", "0000000000000001"]
    # 0 and 3f are 6 bits apart, but each is 3 bits from 7: one group through it
    assert mt.functions.near_duplicates(hashes, max_distance=3) == [[0, 1, 3, 5]]
    assert mt.functions.near_duplicates(hashes, max_distance=2) == [[0, 1, 5]]  # 7 is 2 bits from 1
    assert mt.functions.near_duplicates(hashes, max_distance=0) == []
    assert mt.functions.near_duplicates([None, "00"]) == []
