"""group_by with aggregates, distinct, and selects of only aggregates: in SQL when the inputs are
stored columns, in the pipeline otherwise, with the same results, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

import mediagen
import mediatable as mt
from servers.http import FaultServer

f = mt.functions


@pytest.fixture
def sales(db_home: Path) -> mt.Table:
    t = mt.create_table("sales", {"shop": mt.String, "amount": mt.Float, "qty": mt.Int})
    rows = [("a", 2.0, 1), ("b", 1.5, 4), ("a", 3.0, None), (None, 7.0, 2), ("c", None, None), ("b", 0.5, 6)]
    t.insert([{"shop": s, "amount": a, "qty": q} for s, a, q in rows], quiet=True)
    return t


def _stats(t: mt.Table, key: mt.exprs.Expr, amount: mt.exprs.Expr, qty: mt.exprs.Expr) -> mt.Query:
    return t.group_by(key).select(
        shop=key, n=f.count(), n_qty=f.count(qty), total=f.sum(amount), avg=f.mean(amount), lo=f.min(qty), hi=f.max(qty)
    )


def test_group_by_in_sql_and_in_python_agree(sales: mt.Table) -> None:
    t = sales
    in_sql = _stats(t, t.shop, t.amount, t.qty)
    in_python = _stats(t, t.shop.strip(), t.amount.abs(), t.qty.abs())  # functions without SQL: the pipeline
    expected = [
        {"shop": "a", "n": 2, "n_qty": 1, "total": 5.0, "avg": 2.5, "lo": 1, "hi": 1},
        {"shop": "b", "n": 2, "n_qty": 2, "total": 2.0, "avg": 1.0, "lo": 4, "hi": 6},
        {"shop": "c", "n": 1, "n_qty": 0, "total": None, "avg": None, "lo": None, "hi": None},
        {"shop": None, "n": 1, "n_qty": 1, "total": 7.0, "avg": 7.0, "lo": 2, "hi": 2},
    ]
    assert "  group   sales.shop  in SQL" in repr(in_sql).splitlines()  # pushed down: repr says where it runs
    assert "  group   strip(sales.shop)  in Python" in repr(in_python).splitlines()
    assert list(in_sql.collect()) == expected
    assert list(in_python.collect()) == expected
    result = in_sql.collect()
    assert type(result[0]["n"]) is int and type(result[0]["total"]) is float and type(result[0]["lo"]) is int


def test_grouped_order_limit_where_and_count(sales: mt.Table) -> None:
    t = sales
    q = (
        t.where(t.amount > 1)
        .group_by(t.shop)
        .select(t.shop, total=f.sum(t.amount))
        .order_by(f.sum(t.amount), asc=False)
    )
    assert q.collect()["shop"] == [None, "a", "b"]
    assert q.limit(2).collect()["total"] == [7.0, 5.0]
    assert q.count() == 3
    everything = t.select(n=f.count(), total=f.sum(t.qty), avg=f.mean(t.amount)).collect()
    assert list(everything) == [{"n": 6, "total": 13, "avg": 2.8}]
    empty = t.where(t.qty > 100).select(n=f.count(), total=f.sum(t.qty)).collect()
    assert list(empty) == [{"n": 0, "total": None}]


def test_distinct(sales: mt.Table) -> None:
    t = sales
    assert repr(t.select(t.shop).distinct()).splitlines()[-1] == "  distinct  in SQL"
    assert repr(t.select(n=f.count())).splitlines()[-1] == "  group   (all rows)  in SQL"
    assert t.select(t.shop).distinct().collect()["shop"] == ["a", "b", "c", None]
    assert t.select(t.shop.upper()).distinct().collect()["upper"] == ["A", "B", "C", None]  # in SQL
    in_python = t.select(t.shop.strip()).distinct()
    assert repr(in_python).splitlines()[-1] == "  distinct  in Python"
    assert in_python.collect()["strip"] == ["a", "b", "c", None]
    assert t.select(t.shop).distinct().count() == 4


def test_grouped_outputs_must_be_keys_or_aggregates(sales: mt.Table) -> None:
    t = sales
    with pytest.raises(mt.ExprError, match="neither an aggregate nor a group_by"):
        t.group_by(t.shop).select(t.shop, t.qty).collect()
    with pytest.raises(mt.ExprError, match="needs numbers"):
        f.sum(t.shop)
    with pytest.raises(mt.ExprError, match="cannot store"):
        t.add_computed_column(n=f.count())


def _pictures(
    server: FaultServer, tmp_path: Path, folder: str, rows: list[tuple[int | None, str]]
) -> tuple[mt.Table, list[str]]:
    """Table 'pics' of (image, label) rows: a JPEG `width` px wide (one file per width), or a missing file (None).

    Returns the table and the URLs of the files, by width.
    """
    urls: dict[int, str] = {}
    for width, _ in rows:
        if width is not None and width not in urls:
            jpeg = mediagen.make_jpeg(tmp_path / f"{width}.jpg", size=(width, 10))
            urls[width] = server.put(f"{folder}/{width}.jpg", jpeg.read_bytes())
    missing = server.url(f"{folder}/missing.jpg")
    t = mt.create_table("pics", {"image": mt.Image, "label": mt.String})
    t.insert(
        [{"image": urls.get(w, missing) if w is not None else missing, "label": label} for w, label in rows], quiet=True
    )
    return t, list(urls.values())


def test_aggregates_over_media_run_in_the_pipeline(db_home: Path, http_server: FaultServer, tmp_path: Path) -> None:
    t, _ = _pictures(http_server, tmp_path, "agg", [(10, "x"), (20, "y"), (30, "x")])
    result = t.group_by(t.label).select(t.label, n=f.count(t.image), avg_w=f.mean(t.image.width)).collect()
    assert list(result) == [{"label": "x", "n": 2, "avg_w": 20.0}, {"label": "y", "n": 1, "avg_w": 20.0}]


def test_failed_group_keys_and_aggregate_inputs_raise_or_say_what_they_left_out(
    db_home: Path, http_server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t, _ = _pictures(http_server, tmp_path, "agg-fail", [(10, "x"), (20, "x"), (None, "y")])
    by_width = t.group_by(t.image.width).select(w=t.image.width, n=f.count())
    with pytest.raises(mt.ComputeError, match=r"group key .*MediaNotFound"):
        by_width.collect()
    capsys.readouterr()
    assert list(by_width.collect(on_error="ignore")) == [{"w": 10, "n": 1}, {"w": 20, "n": 1}]
    out = capsys.readouterr().out
    assert "1 of 3 values of the group key " in out and "(1 not found); those rows are left out of the groups" in out
    means = t.group_by(t.label).select(t.label, n=f.count(), avg_w=f.mean(t.image.width))
    with pytest.raises(mt.ComputeError, match=r"'avg_w' failed .*MediaNotFound"):
        means.collect()
    assert list(means.collect(on_error="ignore")) == [
        {"label": "x", "n": 2, "avg_w": 15.0},
        {"label": "y", "n": 1, "avg_w": None},  # the group stays; its one failed width is not averaged
    ]
    assert "1 of 3 values of 'avg_w' failed (1 not found); those values are not aggregated" in capsys.readouterr().out


def test_media_outputs_of_grouped_queries_are_result_media(
    db_home: Path, http_server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t, urls = _pictures(http_server, tmp_path, "agg-media", [(10, "x"), (10, "x"), (20, "y"), (None, "y")])
    with pytest.raises(mt.ComputeError, match=r"'image' failed .*MediaNotFound"):
        t.select(t.label, t.image).distinct().collect()
    capsys.readouterr()
    result = t.select(t.label, t.image).distinct().collect(on_error="ignore")  # in SQL, then fetched as any result
    assert [(r["label"], r["image"].size if r["image"] else None) for r in result] == [
        ("x", (10, 10)),
        ("y", (20, 10)),
        ("y", None),  # ordered by the keys: the URL of 20.jpg before missing.jpg's
    ]
    assert "1 of 3 values of 'image' failed (1 not found); see .errormsg" in capsys.readouterr().out
    assert result.to_pandas(media="url")["image"].tolist()[:2] == urls
    grouped = t.group_by(t.image).select(t.image, n=f.count()).collect(on_error="ignore", quiet=True)
    assert sorted(n for n in grouped["n"]) == [1, 1, 2]
    assert http_server.count("agg-media/10.jpg") == 1  # fetched once, through the cache
