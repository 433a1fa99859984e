"""One row's evaluation in the pipeline (exec/pipeline.py, exec/isolation.py): each image decoded once per row,
in either mode, and a failed decode failing every function that reads it.

Decodes are counted by wrapping Pillow's `ImageFile.load` (a spy: it counts, then decodes as usual).
"""

from __future__ import annotations

import collections
import io
from pathlib import Path
from typing import Any

import PIL.Image
import PIL.ImageDraw
import PIL.ImageFile
import pytest

import mediagen
import mediatable as mt
from servers.http import FaultServer


@pytest.fixture
def session(clean_env: Path) -> mt.Session:
    return mt.init(home=clean_env, quiet=True, compute_workers=2)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """Decodes per file name in this process (a load that finds pixels to decode)."""
    counts: collections.Counter[str] = collections.Counter()
    load = PIL.ImageFile.ImageFile.load

    def counting_load(self: PIL.ImageFile.ImageFile) -> Any:
        if self.tile:
            counts[Path(getattr(self, "filename", "") or "?").name] += 1
        return load(self)

    monkeypatch.setattr(PIL.ImageFile.ImageFile, "load", counting_load)
    return counts


@mt.udf
def black_box(img: mt.Image) -> int:
    """Draws on its own input (in place) and reports a pixel it painted."""
    PIL.ImageDraw.Draw(img).rectangle((0, 0, 20, 20), fill=(0, 0, 0))
    return sum(img.getpixel((5, 5)))


@mt.udf
def corner(img: mt.Image) -> int:
    return sum(img.getpixel((5, 5)))


@mt.udf
def image_format(img: mt.Image) -> str:
    return str(img.format)


def photos(server: FaultServer, tmp_path: Path, count: int) -> list[str]:
    urls = []
    for i in range(count):
        path = mediagen.make_photo_jpeg(tmp_path / f"photo{i}.jpg", (320, 240), seed=i)
        urls.append(server.put(f"decode-once/photo{i}.jpg", path.read_bytes()))
    return urls


def test_every_function_of_a_row_shares_one_decode(
    session: mt.Session, http_server: FaultServer, tmp_path: Path, decodes: collections.Counter[str]
) -> None:
    urls = photos(http_server, tmp_path, 10)
    t = mt.create_table("photos", {"image": mt.Image})
    for column, expr in [
        ("turned", lambda: t.image.rotate(90)),
        ("painted", lambda: black_box(t.image)),
        ("corner", lambda: corner(t.image)),
        ("small", lambda: t.image.resize((64, 48))),
        ("gray", lambda: t.image.convert("L")),
        ("fmt", lambda: image_format(t.image)),
        ("w", lambda: t.image.width),
    ]:
        t.add_computed_column(**{column: expr()}, quiet=True)
    fresh = [sum(PIL.Image.open(tmp_path / f"photo{i}.jpg").convert("RGB").getpixel((5, 5))) for i in range(10)]
    decodes.clear()

    status = t.insert([{"image": u} for u in urls], quiet=True)  # every column computed in one pass per row

    assert status.num_excs == 0
    cached = {p.name for p in (session.settings.home / "file_cache").rglob("*.jpg")}
    assert len(cached) == 10 and set(decodes) == cached  # the cache's files, each decoded once for all 7 columns
    assert set(decodes.values()) == {1}
    rows = t.select(t.painted, t.corner, t.fmt, t.w, small=t.small.width, gray=t.gray.mode).collect()
    assert [r["painted"] for r in rows] == [0] * 10
    assert [r["corner"] for r in rows] == fresh  # the drawing was done on a copy of its own
    assert {(r["fmt"], r["w"], r["small"], r["gray"]) for r in rows} == {("JPEG", 320, 64, "L")}

    decodes.clear()  # a query with several functions of one image: one decode per row too
    result = t.select(a=t.image.rotate(45), b=corner(t.image), c=t.image.thumbnail((100, 100))).collect()
    assert len(result) == 10 and set(decodes.values()) == {1} and len(decodes) == 10


def test_a_header_only_function_first_leaves_the_downscale_its_reduced_decode(
    session: mt.Session, http_server: FaultServer, tmp_path: Path, decodes: collections.Counter[str]
) -> None:
    urls = photos(http_server, tmp_path, 4)
    t = mt.create_table("photos", {"image": mt.Image})
    t.insert([{"image": u} for u in urls], quiet=True)
    decodes.clear()
    rows = t.select(w=t.image.width, small=t.image.resize((80, 60))).collect()
    assert {(r["w"], r["small"].size) for r in rows} == {(320, (80, 60))}
    assert len(decodes) == 4 and set(decodes.values()) == {1}


def broken_png(path: Path) -> Path:
    """A PNG whose header reads but whose pixel data is damaged (Pillow: "broken data stream")."""
    buffer = io.BytesIO()
    PIL.Image.radial_gradient("L").resize((64, 48)).convert("RGB").save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"IDAT") + 30
    data[start : start + 30] = bytes(b ^ 0x55 for b in data[start : start + 30])
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_a_failed_decode_fails_every_function_reading_it(
    session: mt.Session, http_server: FaultServer, tmp_path: Path, mode: str
) -> None:
    @mt.udf(isolation=mode)
    def mean_of(img: mt.Image, again: mt.Image) -> float:  # the same image twice in one call
        gray = img.convert("L")
        return gray.resize((1, 1), PIL.Image.Resampling.BOX).getpixel((0, 0)) + 0 * again.convert("L").getpixel((0, 0))

    bad = http_server.put(f"decode-fail/{mode}.png", broken_png(tmp_path / "bad.png").read_bytes())
    good = http_server.put(f"decode-fail/{mode}.jpg", mediagen.make_jpeg(tmp_path / "good.jpg").read_bytes())
    t = mt.create_table("pngs", {"image": mt.Image})
    t.add_computed_column(turned=t.image.rotate(90), quiet=True)
    t.add_computed_column(mean=mean_of(t.image, t.image), quiet=True)
    t.add_computed_column(gray=t.image.convert("L"), quiet=True)
    status = t.insert([{"image": bad}, {"image": good}], quiet=True)

    assert status.num_excs == 3
    rows = t.select(
        t.turned.errortype,
        t.mean.errortype,
        t.mean.errormsg,
        t.gray.errortype,
        ok=t.mean != None,  # noqa: E711
    ).collect()
    failed, fine = rows[0], rows[1]
    assert (failed["turned_errortype"], failed["gray_errortype"]) == ("MediaDecodeError", "MediaDecodeError")
    assert failed["mean_errortype"] == "OSError" and "broken data stream" in failed["mean_errormsg"]
    assert fine["ok"] and fine["mean_errortype"] is None
