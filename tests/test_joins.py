"""Joins of two tables, inner and left, with selects, filters and order over both sides, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

import mediatable as mt


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
    inner = images.join(notes, on=on).order_by(images.id, notes.note).select(images.id, notes.note, url=images.image)
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
    everything = images.join(notes, on=on).limit(1).collect()
    assert everything.columns == ["id", "image", "label", "image_id", "note", "notes_label"]


def test_joins_that_cannot_run_in_sql_are_refused(tables: tuple[mt.Table, mt.Table]) -> None:
    images, notes = tables
    with pytest.raises(mt.ExprError, match="joins run only in SQL"):
        images.join(notes, on=images.id == notes.image_id).select(w=images.image.width).collect()
    with pytest.raises(mt.InvalidArgument, match="self-joins"):
        images.join(images, on=images.id == images.id)
    with pytest.raises(mt.InvalidArgument, match="how"):
        images.join(notes, on=images.id == notes.image_id, how="outer")
    other = mt.create_table("other", {"n": mt.Int})
    with pytest.raises(mt.ExprError, match="is not a column"):
        images.join(notes, on=images.id == notes.image_id).select(other.n)
