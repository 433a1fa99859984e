"""Joins of two tables, inner and left, with selects, filters and order over both sides, on SQLite and PostgreSQL:
in SQL where they can, in the pipeline otherwise (media fetched through the cache), self-joins through aliases,
group_by and distinct over joined rows."""

from __future__ import annotations

import re
from pathlib import Path

import PIL.Image
import pytest

import mediagen
import mediatable as mt
from servers.http import FaultServer


@pytest.fixture
def tables(db_home: Path) -> tuple[mt.Table, mt.Table]:
    images = mt.create_table("images", {"id": mt.Int, "image": mt.Image, "label": mt.String})
    images.insert([{"id": i, "image": f"s3://bucket/{i}.jpg", "label": f"l{i}"} for i in range(4)], quiet=True)
    notes = mt.create_table("notes", {"image_id": mt.Int, "note": mt.String, "label": mt.String})
    notes.insert(
        [
            {"image_id": 1, "note": "blurry", "label": "x"},
            {"image_id": 1, "note": "dark", "label": "y"},
            {"image_id": 3, "note": "ok", "label": "z"},
            {"image_id": 9, "note": "orphan", "label": "w"},
        ],
        quiet=True,
    )
    return images, notes


def test_inner_and_left_joins(tables: tuple[mt.Table, mt.Table]) -> None:
    images, notes = tables
    on = images.id == notes.image_id
    inner = images.join(notes, on=on).order_by(images.id, notes.note)
    inner = inner.select(images.id, notes.note, url=images.image.fileurl)
    assert [(r["id"], r["note"]) for r in inner.collect()] == [(1, "blurry"), (1, "dark"), (3, "ok")]
    assert inner.collect()["url"][0] == "s3://bucket/1.jpg"
    left = images.join(notes, on=on, how="left").order_by(images.id, notes.note).select(images.id, notes.note)
    assert [(r["id"], r["note"]) for r in left.collect()] == [
        (0, None),
        (1, "blurry"),
        (1, "dark"),
        (2, None),
        (3, "ok"),
    ]
    assert images.join(notes, on=on).where(notes.note.startswith("d")).select(images.label).collect()["label"] == ["l1"]
    assert images.join(notes, on=on).count() == 3
    everything = images.join(notes, on=on).limit(1).collect(on_error="ignore", quiet=True)  # s3://bucket is nowhere
    assert everything.columns == ["id", "image", "label", "image_id", "note", "notes_label"]


def test_what_a_join_refuses(tables: tuple[mt.Table, mt.Table]) -> None:
    images, notes = tables
    with pytest.raises(mt.ExprError, match=r"join condition .* must run in SQL"):
        images.join(notes, on=images.label.strip() == notes.note.strip()).collect()
    with pytest.raises(mt.InvalidArgument, match="alias"):
        images.join(images, on=images.id == images.id)
    with pytest.raises(mt.InvalidArgument, match="name of the left side"):
        images.join(images.alias("images"), on=images.id == images.id)
    with pytest.raises(mt.InvalidName):
        images.alias("no spaces")
    with pytest.raises(mt.ExprError, match="is not a column"):
        images.join(notes, on=images.id == notes.image_id).select(notes.alias("n").note)
    with pytest.raises(mt.InvalidArgument, match="how"):
        images.join(notes, on=images.id == notes.image_id, how="outer")
    other = mt.create_table("other", {"n": mt.Int})
    with pytest.raises(mt.ExprError, match="is not a column"):
        images.join(notes, on=images.id == notes.image_id).select(other.n)


@pytest.fixture
def pictures(db_home: Path, http_server: FaultServer, tmp_path: Path) -> tuple[mt.Table, mt.Table]:
    """`photos` (ids 0-3: widths 30, 40, 50 and a missing file) and `frames` (borders around some of them)."""
    folder = f"joins-{tmp_path.name}"
    urls = [
        http_server.put(f"{folder}/{i}.jpg", mediagen.make_jpeg(tmp_path / f"{i}.jpg", size=(w, 20)).read_bytes())
        for i, w in enumerate([30, 40, 50])
    ]
    urls.append(http_server.url(f"{folder}/missing.jpg"))
    photos = mt.create_table("photos", {"id": mt.Int, "image": mt.Image})
    photos.insert([{"id": i, "image": u} for i, u in enumerate(urls)], quiet=True)
    borders = [
        http_server.put(f"{folder}/b{i}.png", mediagen.make_png(tmp_path / f"b{i}.png", size=(w, 10)).read_bytes())
        for i, w in enumerate([5, 6])
    ]
    frames = mt.create_table("frames", {"photo_id": mt.Int, "border": mt.Image, "kind": mt.String})
    frames.insert(
        [
            {"photo_id": 0, "border": borders[0], "kind": "thin"},
            {"photo_id": 2, "border": borders[1], "kind": "wide"},
            {"photo_id": 2, "border": borders[0], "kind": "thin"},
            {"photo_id": 3, "border": borders[1], "kind": "wide"},
        ],
        quiet=True,
    )
    return photos, frames


def test_outputs_over_media_on_both_sides_are_fetched_through_the_cache(pictures: tuple[mt.Table, mt.Table]) -> None:
    photos, frames = pictures
    joined = photos.join(frames, on=photos.id == frames.photo_id).order_by(photos.id, frames.kind)
    rows = joined.select(
        photos.id, w=photos.image.width, bw=frames.border.width, total=photos.image.width + frames.border.width
    )
    with pytest.raises(mt.ComputeError, match=r"'w' failed .*MediaNotFound") as info:
        rows.collect()
    assert info.value.table == "photos join frames"
    result = rows.collect(on_error="ignore", quiet=True)
    assert [(r["id"], r["w"], r["bw"], r["total"]) for r in result] == [
        (0, 30, 5, 35),
        (2, 50, 5, 55),
        (2, 50, 6, 56),
        (3, None, 6, None),
    ]
    assert result.to_pandas()["w"].isna().tolist() == [False, False, False, True]
    assert "MediaNotFound" in repr(result).splitlines()[-1]
    images = joined.where(photos.id < 3).select(photos.image, frames.border).collect()
    assert [(r["image"].size, r["border"].size) for r in images] == [
        ((30, 20), (5, 10)),
        ((50, 20), (5, 10)),
        ((50, 20), (6, 10)),
    ]
    assert all(isinstance(r["image"], PIL.Image.Image) for r in images)
    left = photos.join(frames, on=photos.id == frames.photo_id, how="left").order_by(photos.id, frames.kind)
    assert left.where(photos.id < 3).select(photos.id, bw=frames.border.width).collect()["bw"] == [5, None, 5, 6]


def test_filters_and_sort_keys_computed_in_python(pictures: tuple[mt.Table, mt.Table]) -> None:
    photos, frames = pictures
    joined = photos.join(frames, on=photos.id == frames.photo_id)
    wide = joined.where(photos.image.width + frames.border.width > 50).select(photos.id, frames.kind)
    assert "in Python" in repr(wide)
    assert [tuple(r.values()) for r in wide.collect(on_error="ignore", quiet=True)] == [(2, "wide"), (2, "thin")]
    with pytest.raises(mt.ComputeError, match="where"):
        wide.collect()
    ordered = joined.where(photos.id < 3).order_by(frames.border.width, photos.image.width, asc=False)
    assert [tuple(r.values()) for r in ordered.select(photos.id, frames.kind).collect()] == [
        (2, "wide"),
        (2, "thin"),
        (0, "thin"),
    ]
    assert ordered.limit(1).select(frames.kind).collect()["kind"] == ["wide"]
    assert joined.where(frames.border.width == 6).count() == 2  # a filter in Python counts too
    batches = [len(b) for b in joined.where(photos.id < 3).select(frames.kind).iter_batches(batch_size=2)]
    assert batches == [2, 1]


def test_self_joins_through_an_alias(db_home: Path) -> None:
    staff = mt.create_table("staff", {"id": mt.Int, "name": mt.String, "boss": mt.Int})
    staff.insert(
        [
            {"id": 1, "name": "Ada", "boss": None},
            {"id": 2, "name": "Bob", "boss": 1},
            {"id": 3, "name": "Cy", "boss": 1},
            {"id": 4, "name": "Di", "boss": 3},
        ],
        quiet=True,
    )
    boss = staff.alias("chief")
    pairs = staff.join(boss, on=staff.boss == boss.id, how="left").order_by(staff.id)
    assert [tuple(r.values()) for r in pairs.select(staff.name, boss.name).collect()] == [
        ("Ada", None),
        ("Bob", "Ada"),
        ("Cy", "Ada"),
        ("Di", "Cy"),
    ]
    assert pairs.select(staff.name, boss.name).collect().columns == ["name", "name_1"]
    assert pairs.limit(1).collect().columns == ["id", "name", "boss", "chief_id", "chief_name", "chief_boss"]

    @mt.udf
    def shout(text: str) -> str:  # a function SQL cannot run
        return text.upper() + "!"

    joined = staff.join(boss, on=staff.boss == boss.id, how="left")
    shouted = joined.where(shout(boss.name) == "ADA!").order_by(shout(staff.name), asc=False)
    assert repr(shouted).splitlines()[1:] == [
        "  left join 'staff' as 'chief' on (staff.boss == chief.id)  in SQL",
        "  select  id, name, boss, chief_id=chief.id, chief_name=chief.name, chief_boss=chief.boss",
        "  where   (shout(chief.name) == 'ADA!')  in Python",
        "  order   shout(staff.name) desc  in Python",
    ]
    assert [tuple(r.values()) for r in shouted.select(staff.name, s=shout(boss.name)).collect()] == [
        ("Cy", "ADA!"),
        ("Bob", "ADA!"),
    ]
    team = staff.join(boss, on=staff.boss == boss.id).group_by(boss.name).select(boss.name, n=mt.functions.count())
    assert [tuple(r.values()) for r in team.collect()] == [("Ada", 2), ("Cy", 1)]


def test_group_by_and_distinct_over_a_join(pictures: tuple[mt.Table, mt.Table]) -> None:
    photos, frames = pictures
    joined = photos.join(frames, on=photos.id == frames.photo_id)
    in_sql = joined.group_by(frames.kind).select(frames.kind, n=mt.functions.count(), top=mt.functions.max(photos.id))
    assert [tuple(r.values()) for r in in_sql.collect()] == [("thin", 2, 2), ("wide", 2, 3)]
    in_python = joined.group_by(frames.kind).select(frames.kind, w=mt.functions.sum(photos.image.width))
    assert [tuple(r.values()) for r in in_python.collect(on_error="ignore", quiet=True)] == [("thin", 80), ("wide", 50)]
    assert joined.select(frames.kind).distinct().collect()["kind"] == ["thin", "wide"]
    assert joined.select(bw=frames.border.width).distinct().collect()["bw"] == [5, 6]
    assert joined.group_by(frames.kind).select(frames.kind).count() == 2


def test_failed_sort_keys_over_a_join_raise_or_sort_last_and_say_so(
    pictures: tuple[mt.Table, mt.Table], capsys: pytest.CaptureFixture[str]
) -> None:
    photos, frames = pictures
    ordered = photos.join(frames, on=photos.id == frames.photo_id).order_by(photos.image.width, asc=False)
    query = ordered.select(photos.id, frames.kind)
    with pytest.raises(mt.ComputeError, match=r"sort key .*MediaNotFound"):
        query.collect()
    capsys.readouterr()
    rows = [tuple(r.values()) for r in query.collect(on_error="ignore")]
    assert sorted(rows[:2]) == [(2, "thin"), (2, "wide")] and rows[2] == (0, "thin")  # widths 50, 50, 30
    assert rows[3:] == [(3, "wide")]  # the photo whose file is missing: last, not dropped
    summary = capsys.readouterr().out
    assert re.search(r"1 of 4 values of the sort key .* failed \(1 not found\); those rows sort last", summary)
