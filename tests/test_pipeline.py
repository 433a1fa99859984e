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
from mediatable.exec.headers import header_reads
from mediatable.exec.pipeline import Pipeline, Target
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


# -- header reads: targets that only read image headers take a pass of their own (exec/headers.py) --------


@mt.udf(light=True)
def width_read_generally(img: mt.Image) -> int:  # what t.image.width computes, through the general evaluation
    return img.width


@mt.udf(light=True)
def mode_read_generally(img: mt.Image) -> str:
    return img.mode


def test_header_reads_give_the_values_and_errors_of_the_general_evaluation(
    session: mt.Session, http_server: FaultServer, tmp_path: Path
) -> None:
    folder = f"headers-{tmp_path.name}"
    good = http_server.put(f"{folder}/good.jpg", mediagen.make_jpeg(tmp_path / "good.jpg", size=(64, 48)).read_bytes())
    rgba = tmp_path / "alpha.png"
    PIL.Image.new("RGBA", (30, 20)).save(rgba)
    alpha = http_server.put(f"{folder}/alpha.png", rgba.read_bytes())
    corrupt = http_server.put(f"{folder}/corrupt.jpg", mediagen.make_corrupt_jpeg(tmp_path / "c.jpg").read_bytes())
    text = http_server.put(f"{folder}/text.jpg", b"not an image at all")
    missing = http_server.url(f"{folder}/missing.jpg?token=SECRET123")
    images = [good, corrupt, None, missing, alpha, text, good]
    t = mt.create_table("headers", {"image": mt.Image, "n": mt.Int})
    t.insert([{"image": image, "n": n} for n, image in enumerate(images)], quiet=True)
    header_exprs = [t.image.width, t.image.height, t.image.mode, t.image.size]
    assert header_reads(header_exprs, set()) is not None  # the header pass computes these
    assert header_reads([width_read_generally(t.image)], set()) is None
    assert header_reads([t.image.width, t.image.width + 1], set()) is None  # one target is not a header read

    t.add_computed_column(w=t.image.width, quiet=True)
    t.add_computed_column(gw=width_read_generally(t.image), gm=mode_read_generally(t.image), quiet=True)
    # on insert: four header reads of each row's image in one pass
    later = mt.create_table("later", {"image": mt.Image, "n": mt.Int})
    for name, expr in zip(
        "whms", [later.image.width, later.image.height, later.image.mode, later.image.size], strict=True
    ):
        later.add_computed_column(**{name: expr}, quiet=True)
    status = later.insert([{"image": image, "n": n} for n, image in enumerate(images)], quiet=True)
    assert status.num_excs == 3 * 4  # corrupt, missing, text: four columns each; None is no error

    def cells(table: mt.Table, *names: str) -> list[tuple[Any, ...]]:
        columns = [getattr(table, n) for n in names]
        selected = [c for n in columns for c in (n, n.errortype, n.errormsg)]
        return [tuple(r.values()) for r in table.order_by(table.n).select(*selected).collect()]

    assert cells(t, "w") == cells(t, "gw") == cells(later, "w")
    assert [r[0] for r in cells(later, "w")] == [64, None, None, None, 30, None, 64]
    assert (
        [r[0] for r in cells(later, "m")]
        == [r[0] for r in cells(t, "gm")]
        == ["RGB", None, None, None, "RGBA", None, "RGB"]
    )
    assert [r[0] for r in cells(later, "s")][4] == [30, 20]
    errors = [(r[1], r[2]) for r in cells(later, "w")]  # by n
    assert errors[1][0] == errors[5][0] == "MediaDecodeError" and errors[3][0] == "MediaNotFound"
    assert errors[2] == errors[0] == (None, None)
    assert f"{folder}/missing.jpg" in errors[3][1] and "SECRET123" not in errors[3][1]
    assert f"{folder}/text.jpg" in errors[5][1]

    with pytest.raises(mt.ComputeError, match=r"headers\.bad failed at row \d+: MediaDecodeError"):
        t.add_computed_column(bad=t.image.height, on_error="abort", quiet=True)
    assert "bad" not in t.columns


@pytest.mark.parametrize("general", [False, True], ids=["header-pass", "general"])
def test_a_file_deleted_after_it_was_prefetched_is_fetched_again(
    session: mt.Session, http_server: FaultServer, tmp_path: Path, general: bool
) -> None:
    folder = f"gone-{tmp_path.name}-{general}"
    urls = [
        http_server.put(f"{folder}/{i}.jpg", mediagen.make_jpeg(tmp_path / f"{i}.jpg", size=(40 + i, 30)).read_bytes())
        for i in range(3)
    ]
    t = mt.create_table("gone", {"image": mt.Image})
    t.insert([{"image": u} for u in urls], quiet=True)
    t.add_computed_column(w0=t.image.width, quiet=True)  # all three cached now
    with session.cache_lease() as lease:
        cached = [lease.get(u) for u in urls]
    expr = width_read_generally(t.image) if general else t.image.width
    assert (header_reads([expr], set()) is None) == general

    chunks: list[int] = []

    def delete_the_next_file(rows_done: int) -> None:  # after the first chunk: the next is prefetched already
        chunks.append(rows_done)
        if len(chunks) == 1:
            cached[1].unlink()

    rows: list[dict[str, Any]] = [{"image": u} for u in urls]
    http_server.reset()
    with session.cache_lease() as lease:
        pipeline = Pipeline(lease, session.media_store, 1, progress=delete_the_next_file)
        pipeline.run(rows, [Target("w", expr, mt.Int)], chunk_size=1)
    assert [r["w"] for r in rows] == [40, 41, 42] and chunks == [1, 1, 1]
    assert http_server.count() == 1 and http_server.count(f"{folder}/1.jpg") == 1  # only the deleted file, again
    assert cached[1].exists()


def test_chunks_hold_at_most_their_share_of_the_pinned_bytes(
    clean_env: Path, http_server: FaultServer, tmp_path: Path
) -> None:
    session = mt.init(home=clean_env, quiet=True, cache_size=256 * 1024, compute_workers=1)  # all 40 fit
    folder = f"cap-{tmp_path.name}"
    files = [mediagen.make_jpeg(tmp_path / f"{i}.jpg", size=(64, 48), noise=True) for i in range(40)]
    urls = [http_server.put(f"{folder}/{i}.jpg", p.read_bytes()) for i, p in enumerate(files)]
    sizes = [p.stat().st_size for p in files]
    t = mt.create_table("cap", {"image": mt.Image})
    t.insert([{"image": u} for u in urls[:20]], quiet=True)
    t.add_computed_column(w=t.image.width, quiet=True)  # the first half is cached, the second is not
    chunks: list[int] = []
    rows: list[dict[str, Any]] = [{"image": u} for u in urls]
    with session.cache_lease() as lease:
        cap = lease.pin_capacity // 4  # the share of one chunk when one thread computes
        Pipeline(lease, session.media_store, 1, progress=chunks.append).run(rows, [Target("w", t.image.width, mt.Int)])
    assert [r["w"] for r in rows] == [64] * 40
    assert sum(chunks) == 40 and len(chunks) > 2
    start = 0
    for length in chunks:  # each chunk ends at the first row that takes it to the cap
        held = sizes[start : start + length]
        assert sum(held[:-1]) < cap and (sum(held) >= cap or start + length == 40)
        start += length


@mt.udf(header_only=True)
def aspect(img: mt.Image) -> float:
    return img.width / img.height


def test_a_header_only_udf_takes_the_header_pass(session: mt.Session, http_server: FaultServer, tmp_path: Path) -> None:
    urls = [
        http_server.put(f"aspect-{tmp_path.name}/{i}.jpg", mediagen.make_jpeg(tmp_path / f"{i}.jpg", size).read_bytes())
        for i, size in enumerate([(64, 48), (30, 60)])
    ]
    t = mt.create_table("aspects", {"image": mt.Image})
    t.insert([{"image": u} for u in [*urls, None]], quiet=True)
    assert aspect.light and header_reads([aspect(t.image), t.image.mode], set()) is not None
    status = t.add_computed_column(ratio=aspect(t.image), quiet=True)
    assert status.num_excs == 0
    assert t.select(t.ratio).collect()["ratio"] == [64 / 48, 0.5, None]
