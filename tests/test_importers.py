"""Tables from files and data: `create_table(source=...)` with type inference, and inserts in bounded batches."""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

import mediatable as mt
from mediatable.importers import BATCH_SIZE, RowSource


@pytest.fixture
def home(clean_env: Path, db_url: str) -> Path:
    """A fresh home whose catalog is SQLite, then PostgreSQL (the `db_url` fixture)."""
    mt.init(home=clean_env, db_url=db_url, quiet=True)
    return clean_env


def schema_of(table: mt.Table) -> dict[str, str]:
    return {name: repr(table[name].col_type) for name in table.columns}


URLS = ["https://example.com/a.jpg", "s3://bucket/b.jpg", "gs://bucket/c.png"]


def test_csv_of_urls_with_overrides(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "urls.csv"
    csv.write_text(
        "image,label,score,qty,taken\n"
        f"{URLS[0]},cat,0.5,3,2024-01-02T03:04:05\n"
        f"{URLS[1]},dog,,,\n"
        f"{URLS[2]},,1.25,7,2024-05-06T00:00:00\n"
    )
    t = mt.create_table("from_csv", source=str(csv), schema_overrides={"image": mt.Image})
    assert capsys.readouterr().out.splitlines() == ["Created table 'from_csv'.", "Inserted 3 rows with 0 errors."]
    assert schema_of(t) == {"image": "Image", "label": "String", "score": "Float", "qty": "Int", "taken": "Timestamp"}
    rows = t.select(t.image.fileurl, t.label, t.score, t.qty, t.taken).collect()
    assert rows["image_fileurl"] == URLS
    assert rows["label"] == ["cat", "dog", None]
    assert rows["qty"] == [3, None, 7]  # an integer column with a missing cell stays Int
    assert rows["taken"][0] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC) and rows["taken"][1] is None


def test_parquet_dataframe_and_arrow_sources(home: Path, tmp_path: Path) -> None:
    frame = pd.DataFrame({"url": URLS, "n": [1, 2, 3], "tags": [["a"], ["b", "c"], []]})
    frame.to_parquet(tmp_path / "x.parquet")
    for name, source in [
        ("from_parquet", tmp_path / "x.parquet"),
        ("from_pandas", frame),
        ("from_arrow", pa.Table.from_pandas(frame)),
    ]:
        t = mt.create_table(name, source=source, schema_overrides={"url": mt.Image})
        assert schema_of(t) == {"url": "Image", "n": "Int", "tags": "Json"}, name
        assert t.select(t.n, t.tags).order_by(t.n).collect()["tags"] == [["a"], ["b", "c"], []], name


def test_pandas_integers_with_nan_become_nullable_ints(home: Path) -> None:
    frame = pd.DataFrame({"n": [1, None, 3], "x": [0.5, None, 2.0], "whole": [1.0, 2.0, 3.0]})
    assert frame["n"].dtype == "float64"  # what pandas does to an integer column with a missing value
    t = mt.create_table("nan_ints", source=frame)
    assert schema_of(t) == {"n": "Int", "x": "Float", "whole": "Float"}
    assert t.select(t.n, t.x).collect()["n"] == [1, None, 3]
    # ... and an existing Int column accepts such a DataFrame too (this was a rejected insert)
    ints = mt.create_table("ints", {"n": mt.Int, "label": mt.String})
    ints.insert(pd.DataFrame({"n": [4, None], "label": [1, 2]}), quiet=True)
    assert ints.select(ints.n, ints.label).collect()["n"] == [4, None]
    assert ints.select(ints.label).collect()["label"] == ["1", "2"]  # numbers for a String column convert


def test_schema_with_source_types_the_columns_given(home: Path) -> None:
    frame = pd.DataFrame({"Image URL": URLS, "2nd label": ["x", "y", "z"], "n": [1, 2, 3]})
    t = mt.create_table("given", {"image_url": mt.Image}, source=frame, schema_overrides={"n": mt.Float})
    assert schema_of(t) == {"image_url": "Image", "c_2nd_label": "String", "n": "Float"}
    assert t.select(t.n).collect()["n"] == [1.0, 2.0, 3.0]


def test_generator_source_infers_from_its_rows(home: Path) -> None:
    rows = ({"name": f"r{i}", "size": i, "when": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)} for i in range(2500))
    t = mt.create_table("gen", source=rows)
    assert schema_of(t) == {"name": "String", "size": "Int", "when": "Timestamp"}
    assert t.count() == 2500


def test_bad_sources_and_overrides_fail_clearly_and_leave_no_table(home: Path, tmp_path: Path) -> None:
    with pytest.raises(mt.InvalidArgument, match="does not have: 'picture'"):
        mt.create_table("bad", source=pd.DataFrame({"image": URLS}), schema_overrides={"picture": mt.Image})
    with pytest.raises(mt.DataError, match=r"use a \.csv, \.tsv or \.parquet file"):
        mt.create_table("bad", source=tmp_path / "x.xlsx")
    with pytest.raises(mt.DataError, match="cannot read"):
        mt.create_table("bad", source=tmp_path / "missing.csv")
    with pytest.raises(mt.InvalidArgument, match="needs source="):
        mt.create_table("bad", {"a": mt.Int}, schema_overrides={"a": mt.Float})
    frame = pd.DataFrame({"image": [URLS[0], "ftp://host/x.jpg"]})
    with pytest.raises(mt.UnsupportedScheme, match=r"row 1, column 'image'.*unsupported URL scheme 'ftp'"):
        mt.create_table("bad", source=frame, schema_overrides={"image": mt.Image})
    assert "bad" not in mt.list_tables()  # the failed import left nothing behind


def test_insert_streams_an_iterable_in_bounded_batches(home: Path) -> None:
    class Row(dict):  # a dict that can be watched with a weak reference
        __hash__ = object.__hash__

    alive: weakref.WeakSet[Row] = weakref.WeakSet()
    most_alive = [0]
    total = 4 * BATCH_SIZE + 500

    def rows() -> Iterator[Row]:
        for i in range(total):
            most_alive[0] = max(most_alive[0], len(alive))
            row = Row(n=i)
            alive.add(row)
            yield row

    t = mt.create_table("stream", {"n": mt.Int})
    t.add_computed_column(double=t.n * 2, quiet=True)
    status = t.insert(rows(), quiet=True)
    assert status.num_rows == total and t.count() == total
    assert t.where(t.double == 2 * (total - 1)).count() == 1
    # rows the generator made were held one batch at a time, never all of them
    assert BATCH_SIZE <= most_alive[0] <= 2 * BATCH_SIZE


def test_insert_of_an_iterable_is_all_or_nothing(home: Path) -> None:
    t = mt.create_table("atomic", {"n": mt.Int})

    def rows() -> Iterator[dict[str, object]]:
        yield from ({"n": i} for i in range(BATCH_SIZE + 10))
        yield {"n": "eleven"}

    with pytest.raises(mt.DataError, match=rf"row {BATCH_SIZE + 10}, column 'n'"):
        t.insert(rows(), quiet=True)
    assert t.count() == 0  # the batches before the bad row were rolled back with it


def test_a_one_shot_iterator_cannot_be_read_twice() -> None:
    source = RowSource(iter([{"a": 1}]))
    assert list(source.batches()) == [[{"a": 1}]]
    with pytest.raises(mt.InvalidArgument, match="already read"):
        list(source.batches())


def test_replace_from_a_source_keeps_the_old_table_until_the_import_succeeds(home: Path) -> None:
    mt.create_dir("d")
    old = mt.create_table("d.pets", {"name": mt.String})
    old.insert([{"name": "Rex"}], quiet=True)
    bad = pd.DataFrame({"image": [URLS[0], "ftp://host/x.jpg"]})
    with pytest.raises(mt.UnsupportedScheme, match="row 1"):
        mt.create_table("d.pets", source=bad, schema_overrides={"image": mt.Image}, if_exists="replace")
    assert mt.list_tables() == ["d.pets"]  # no draft left, the old table untouched
    assert mt.get_table("d.pets").collect()["name"] == ["Rex"]
    new = mt.create_table(
        "d.pets", source=pd.DataFrame({"image": URLS}), schema_overrides={"image": mt.Image}, if_exists="replace"
    )
    assert mt.list_tables() == ["d.pets"] and new.path == "d.pets" and new.count() == 3
    assert schema_of(mt.get_table("d.pets")) == {"image": "Image"}
    with pytest.raises(mt.AlreadyExists):
        mt.create_table("d.pets", source=pd.DataFrame({"x": [1]}))
    assert mt.create_table("d.pets", source=pd.DataFrame({"x": [1]}), if_exists="ignore").count() == 3
