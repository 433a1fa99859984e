"""Results as pandas and Arrow: the dtype and values of every column type (table/convert.py).

Every test runs on SQLite and on a real PostgreSQL server (the `db_home` fixture), through both ways a
result is read: straight from SQL (only stored columns) and through the pipeline (an expression).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import mediagen
import mediatable as mt

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
SCHEMA = {
    "s": mt.String,
    "i": mt.Int,
    "f": mt.Float,
    "b": mt.Bool,
    "ts": mt.Timestamp,
    "j": mt.Json,
    "a": mt.Array(mt.Float, (3,)),
    "image": mt.Image,
    "video": mt.Video,
    "audio": mt.Audio,
    "doc": mt.Document,
}
ARROW_TYPES = {
    "s": pa.string(),
    "i": pa.int64(),
    "f": pa.float64(),
    "b": pa.bool_(),
    "ts": pa.timestamp("us", tz="UTC"),
    "j": pa.string(),  # JSON as its text
    "a": pa.list_(pa.float64()),
    "image": pa.string(),
    "video": pa.string(),
    "audio": pa.string(),
    "doc": pa.string(),
}
MEDIA = ("image", "video", "audio", "doc")


@pytest.fixture
def everything(db_home: Path, tmp_path: Path) -> tuple[mt.Table, dict[str, str]]:
    files = {
        "image": mediagen.make_jpeg(tmp_path / "a.jpg"),
        "video": mediagen.make_mp4(tmp_path / "v.mp4", seconds=0.5),
        "audio": mediagen.make_wav(tmp_path / "a.wav", seconds=0.2),
        "doc": mediagen.make_pdf(tmp_path / "d.pdf", ["page one"]),
    }
    urls = {name: f"file://{path}" for name, path in files.items()}
    t = mt.create_table("everything", SCHEMA)
    full = {"s": "x", "i": 2**40, "f": 0.5, "b": True, "ts": WHEN, "j": {"k": [1, None]}, "a": [1.0, 2.0, 3.0]}
    t.insert([{**full, **urls}, {"i": -1, "b": False}, {}], quiet=True)
    return t, urls


def _queries(t: mt.Table) -> dict[str, mt.Query]:
    stored = t.select(*(getattr(t, name) for name in SCHEMA))
    computed = t.select(*(getattr(t, name) for name in SCHEMA if name != "i"), i=t.i + 0)  # i in the pipeline
    return {"stored": stored, "computed": computed}


@pytest.mark.parametrize("how", ["stored", "computed"])
def test_to_pandas_gives_real_dtypes_for_every_column_type(
    everything: tuple[mt.Table, dict[str, str]], how: str
) -> None:
    t, urls = everything
    frame = _queries(t)[how].to_pandas()
    assert str(frame["i"].dtype) == "Int64" and frame["i"].tolist() == [2**40, -1, pd.NA]
    assert frame["f"].dtype == np.float64 and frame["f"].iloc[0] == 0.5 and frame["f"].iloc[1:].isna().all()
    assert str(frame["b"].dtype) == "boolean" and frame["b"].tolist() == [True, False, pd.NA]
    assert isinstance(frame["ts"].dtype, pd.DatetimeTZDtype) and str(frame["ts"].dtype.tz) == "UTC"
    assert frame["ts"].iloc[0] == pd.Timestamp(WHEN) and frame["ts"].iloc[1:].isna().all()
    assert frame["s"].tolist() == ["x", None, None]
    assert frame["j"].tolist() == [{"k": [1, None]}, None, None]
    np.testing.assert_array_equal(frame["a"].iloc[0], [1.0, 2.0, 3.0])
    assert frame["a"].iloc[1:].isna().all()
    for name in MEDIA:
        assert frame[name].dtype == object and frame[name].tolist() == [urls[name], None, None]
    paths = _queries(t)[how].to_pandas(media="path")
    for name in MEDIA:
        local = paths[name].iloc[0]
        assert isinstance(local, str) and os.path.isfile(local), (name, local)
        assert paths[name].iloc[1:].isna().all()


def test_a_bool_column_without_missing_values_is_numpy_bool(everything: tuple[mt.Table, dict[str, str]]) -> None:
    t, _ = everything
    frame = t.where(t.b != None).select(t.b).to_pandas()  # noqa: E711 (an expression, not a comparison)
    assert frame["b"].dtype == np.bool_ and frame["b"].tolist() == [True, False]


@pytest.mark.parametrize("how", ["stored", "computed"])
def test_to_arrow_gives_real_types_for_every_column_type(everything: tuple[mt.Table, dict[str, str]], how: str) -> None:
    t, urls = everything
    table = _queries(t)[how].to_arrow()
    assert {field.name: field.type for field in table.schema} == ARROW_TYPES
    rows = table.to_pylist()
    assert rows[0]["i"] == 2**40 and rows[0]["f"] == 0.5 and rows[0]["b"] is True and rows[0]["s"] == "x"
    assert rows[0]["ts"] == WHEN
    assert rows[0]["j"] == '{"k": [1, null]}' and rows[0]["a"] == [1.0, 2.0, 3.0]
    assert {name: rows[0][name] for name in MEDIA} == urls
    assert rows[1] == {**dict.fromkeys(SCHEMA), "i": -1, "b": False}
    assert rows[2] == dict.fromkeys(SCHEMA)
    paths = _queries(t)[how].to_arrow(media="path").to_pylist()
    assert all(os.path.isfile(paths[0][name]) for name in MEDIA)


def test_computed_columns_with_failed_cells_are_nulls_of_their_type(db_home: Path) -> None:
    t = mt.create_table("ratios", {"n": mt.Int})
    t.insert([{"n": 2}, {"n": 0}], quiet=True)
    t.add_computed_column(inverse=1 / t.n, quiet=True)  # 1 / 0 fails and is stored as an error
    frame = t.select(t.n, t.inverse).to_pandas()
    assert frame["inverse"].dtype == np.float64 and frame["inverse"].iloc[0] == 0.5 and np.isnan(frame["inverse"][1])
    table = t.select(t.inverse).to_arrow()
    assert table.schema.field("inverse").type == pa.float64() and table.column("inverse").to_pylist() == [0.5, None]
