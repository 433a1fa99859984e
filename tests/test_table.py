"""The spine: catalog, typed tables with URL media cells, insert, update, delete and queries.

Every test runs on SQLite and on a real PostgreSQL server (the `db_url` fixture).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mediatable as mt


@pytest.fixture
def session(db_url: str, clean_env: Path) -> mt.Session:
    return mt.init(home=clean_env, db_url=db_url, quiet=True)


def make_images(session: mt.Session) -> mt.Table:
    mt.create_dir("demo", if_exists="ignore")
    return mt.create_table("demo.images", {"image": mt.Image, "label": mt.String, "score": mt.Float})


def test_init_prints_catalog_url_with_password_masked(capsys: pytest.CaptureFixture[str], clean_env: Path) -> None:
    mt.init(home=clean_env)
    assert f"Connected to mediatable catalog at: sqlite:///{clean_env}/catalog.db" in capsys.readouterr().out
    assert mt.api.mask_password("postgresql://u:hunter2@h/db") == "postgresql://u:***@h/db"


def test_dirs_nested_list_and_drop(session: mt.Session) -> None:
    mt.create_dir("a")
    mt.create_dir("a.b")
    mt.create_dir("a.b.c")
    mt.create_dir("a", if_exists="ignore")
    with pytest.raises(mt.AlreadyExists):
        mt.create_dir("a")
    with pytest.raises(mt.DirNotFound):
        mt.create_dir("x.y")
    assert mt.list_dirs() == ["a", "a.b", "a.b.c"]
    mt.create_table("a.b.t", {"x": mt.Int})
    assert mt.list_tables() == ["a.b.t"]
    assert mt.list_tables("a.b") == ["a.b.t"]
    with pytest.raises(mt.DependencyError, match="not empty"):
        mt.drop_dir("a.b")
    mt.drop_dir("a.b", force=True)
    assert mt.list_dirs() == ["a"]
    assert mt.list_tables() == []


def test_insert_stores_normalized_urls_and_reports(session: mt.Session, capsys: pytest.CaptureFixture[str]) -> None:
    images = make_images(session)
    capsys.readouterr()
    status = images.insert(
        [
            {"image": "HTTPS://Example.com:443/a.jpg", "label": "cat", "score": 1},
            {"image": "s3://bucket/b.jpg", "label": "dog", "score": 2.5},
            {"image": "~/pics/c.jpg", "label": None},
        ]
    )
    assert capsys.readouterr().out.strip() == "Inserted 3 rows with 0 errors."
    assert repr(status) == "3 rows inserted, 9 values computed."
    urls = images.select(images.image.fileurl).collect()["image_fileurl"]
    assert urls[:2] == ["https://example.com/a.jpg", "s3://bucket/b.jpg"]
    assert urls[2] == f"file://{Path('~/pics/c.jpg').expanduser()}"
    assert images.count() == 3


def test_single_row_keyword_insert(session: mt.Session) -> None:
    images = make_images(session)
    images.insert(image="gs://b/x.png", label="one", quiet=True)
    assert images.select(images.label).collect()["label"] == ["one"]


def test_bad_rows_insert_nothing_and_name_the_problem(session: mt.Session) -> None:
    images = make_images(session)
    good = {"image": "s3://b/a.jpg", "label": "ok"}
    with pytest.raises(mt.DataError, match=r"row 1: unknown column 'colour'") as info:
        images.insert([good, {"image": "s3://b/b.jpg", "colour": "red"}])
    assert info.value.row == 1 and info.value.column == "colour"
    with pytest.raises(mt.DataError, match=r"row 1, column 'score': expected a float, got str: 'high'"):
        images.insert([good, {"image": "s3://b/b.jpg", "score": "high"}])
    with pytest.raises(mt.UnsupportedScheme, match=r"row 0, column 'image'.*'ftp'.*supported: http://"):
        images.insert([{"image": "ftp://host/x.jpg"}])
    with pytest.raises(mt.DataError, match="expected an image URL or local path, got int"):
        images.insert([{"image": 42}])
    assert images.count() == 0


def test_large_inserts_check_every_value_and_name_the_bad_one(session: mt.Session) -> None:
    t = mt.create_table("many", {"image": mt.Image, "n": mt.Int, "x": mt.Float, "ok": mt.Bool})
    rows = [{"image": f"https://h/{i}.jpg", "n": i, "x": i, "ok": i % 2 == 0} for i in range(2500)]
    for row, value, message in [
        ({**rows[1700], "n": "1700"}, 1700, r"row 1700, column 'n': expected an int, got str: '1700'"),
        ({**rows[1200], "ok": 1}, 1200, r"row 1200, column 'ok': expected a bool, got int: 1"),
        ({**rows[2100], "n": True}, 2100, r"row 2100, column 'n': expected an int, got bool: True"),
        ({**rows[900], "image": "ftp://h/x.jpg"}, 900, r"row 900, column 'image'.*'ftp'"),
        ({"image": "s3://b/a.jpg", "n": 1, "x": 0.5, "colour": "red"}, 1999, r"row 1999: unknown column 'colour'"),
    ]:
        bad = [*rows[:value], row, *rows[value + 1 :]]
        with pytest.raises(mt.DataError, match=message) as info:
            t.insert(bad, quiet=True)
        assert info.value.row == value
    assert t.count() == 0
    rows[5] = {**rows[5], "x": float("nan"), "image": "HTTPS://H/a/./5.jpg"}
    rows[1500] = {"image": "s3://b/1500.jpg", "n": 1500}  # no 'x', no 'ok': None
    status = t.insert(rows, quiet=True)
    assert repr(status) == "2500 rows inserted, 10000 values computed."
    got = list(t.order_by(t.n).select(t.n, t.x, t.ok, url=t.image.fileurl).collect())
    assert [r["n"] for r in got] == list(range(2500))
    assert type(got[10]["x"]) is float and got[10]["x"] == 10.0 and got[10]["ok"] is True
    assert got[5]["x"] is None and got[5]["url"] == "https://h/a/5.jpg"
    assert got[1500] == {"n": 1500, "x": None, "ok": None, "url": "s3://b/1500.jpg"}


def test_types_roundtrip(session: mt.Session) -> None:
    t = mt.create_table(
        "everything",
        {
            "s": mt.String,
            "i": mt.Int,
            "f": mt.Float,
            "b": mt.Bool,
            "ts": mt.Timestamp,
            "j": mt.Json,
            "a": mt.Array(mt.Float, (3,)),
            "v": mt.Video,
            "au": mt.Audio,
            "d": mt.Document,
        },
    )
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    t.insert(
        [
            {
                "s": "x",
                "i": 2**40,
                "f": 0.5,
                "b": True,
                "ts": when,
                "j": {"k": [1, 2, {"z": None}]},
                "a": [1.0, 2.0, 3.0],
                "v": "https://h/v.mp4",
                "au": "az://c/a.wav",
                "d": "abfs://c/doc.pdf",
            },
            {},
        ],
        quiet=True,
    )
    rows = list(t.select(t.s, t.i, t.f, t.b, t.ts, t.j, t.a).collect())
    assert rows[0]["s"] == "x" and rows[0]["i"] == 2**40 and rows[0]["f"] == 0.5 and rows[0]["b"] is True
    assert rows[0]["ts"] == when
    assert rows[0]["j"] == {"k": [1, 2, {"z": None}]}
    np.testing.assert_array_equal(rows[0]["a"], np.array([1.0, 2.0, 3.0]))
    assert all(v is None for v in rows[1].values())
    with pytest.raises(mt.DataError, match=r"shape \(3,\)"):
        t.insert([{"a": [1.0, 2.0]}], quiet=True)
    assert "Array(Float, (3,))" in repr(t) and "Video" in repr(t)


def test_queries_filters_order_limit(session: mt.Session) -> None:
    t = mt.create_table("nums", {"n": mt.Int, "name": mt.String, "meta": mt.Json})
    t.insert(
        [{"n": i, "name": f"item{i}", "meta": {"tags": ["even" if i % 2 == 0 else "odd"]}} for i in range(10)],
        quiet=True,
    )
    assert t.where(t.n >= 7).select(t.n).collect()["n"] == [7, 8, 9]
    assert t.where((t.n < 2) | (t.n > 8)).select(t.n).collect()["n"] == [0, 1, 9]
    assert t.where(~(t.n < 8) & (t.name != "item9")).select(t.name).collect()["name"] == ["item8"]
    assert t.where(t.name.isin(["item3", "item5"])).count() == 2
    assert t.order_by(t.n, asc=False).limit(3).select(t.n).collect()["n"] == [9, 8, 7]
    result = t.select(t.n, double=t.n * 2, plus=t.n + 0.5).where(t.n == 4).collect()
    assert result[0] == {"n": 4, "double": 8, "plus": 4.5}
    assert t.where(t.meta["tags"][0] == "odd").count() == 5  # evaluated in Python, not SQL
    assert len(t.head(4)) == 4
    frame = t.select(t.n, t.name).to_pandas()
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["n", "name"] and len(frame) == 10
    assert "item0" in repr(t.select(t.name).collect())
    t.insert([{"n": None, "name": "nobody"}], quiet=True)
    assert t.where(t.n == None).select(t.name).collect()["name"] == ["nobody"]  # noqa: E711
    assert t["name"].column.name == "name"


def test_update_and_delete(session: mt.Session, capsys: pytest.CaptureFixture[str]) -> None:
    t = mt.create_table("people", {"name": mt.String, "age": mt.Int})
    t.insert([{"name": "a", "age": 1}, {"name": "b", "age": 2}, {"name": "c", "age": 3}], quiet=True)
    capsys.readouterr()
    status = t.update({"age": 10}, where=t.age >= 2)
    assert repr(status) == "2 rows updated, 2 values computed."
    assert "Updated 2 rows with 0 errors." in capsys.readouterr().out
    assert t.order_by(t.name).select(t.age).collect()["age"] == [1, 10, 10]
    with pytest.raises(mt.DataError, match="expected an int"):
        t.update({"age": "old"})
    status = t.delete(where=t.name == "a")
    assert repr(status) == "1 row deleted, 0 values computed."
    assert t.count() == 2
    t.delete()
    assert t.count() == 0


def test_table_lifecycle_errors(session: mt.Session) -> None:
    t = mt.create_table("t1", {"x": mt.Int})
    with pytest.raises(mt.AlreadyExists):
        mt.create_table("t1", {"x": mt.Int})
    same = mt.create_table("t1", {"y": mt.Int}, if_exists="ignore")
    assert same.columns == ["x"]
    t.insert([{"x": 1}], quiet=True)
    fresh = mt.create_table("t1", {"y": mt.Int}, if_exists="replace")
    assert fresh.columns == ["y"] and fresh.count() == 0
    with pytest.raises(mt.TableNotFound):
        mt.get_table("nope")
    with pytest.raises(mt.ColumnNotFound, match="columns: y"):
        _ = fresh.nope
    mt.drop_table("t1")
    with pytest.raises(mt.TableNotFound):
        mt.drop_table("t1")
    mt.drop_table("t1", if_not_exists="ignore")
    with pytest.raises(mt.InvalidArgument):
        mt.create_table("t2", {"x": mt.Int}, if_exists="sometimes")


@pytest.mark.parametrize(
    "name", ["1abc", "a-b", "a b", "x;drop table mt_tables", "class", "_hidden", "a" * 64, "errortype"]
)
def test_names_are_validated(session: mt.Session, name: str) -> None:
    with pytest.raises(mt.InvalidName):
        mt.create_table("ok", {name: mt.Int})
    if name != "errortype":  # reserved for columns only
        with pytest.raises(mt.InvalidName):
            mt.create_dir(name)


def test_another_process_sees_tables_and_rows(session: mt.Session, clean_env: Path) -> None:
    t = mt.create_table("shared", {"x": mt.Int})
    t.insert([{"x": 1}, {"x": 2}], quiet=True)
    script = textwrap.dedent(
        f"""
        import mediatable as mt
        mt.init(home={str(clean_env)!r}, db_url={session.settings.catalog_url!r}, quiet=True)
        t = mt.get_table('shared')
        t.insert([{{'x': 3}}], quiet=True)
        print(sorted(t.select(t.x).collect()['x']))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[1, 2, 3]"
    assert t.count() == 3


def _insert_many(home: str, db_url: str, worker: int) -> None:
    mt.init(home=home, db_url=db_url, quiet=True)
    t = mt.get_table("race")
    for batch in range(10):
        t.insert([{"worker": worker, "n": batch * 10 + i} for i in range(10)], quiet=True)


def test_concurrent_inserts_from_two_processes_lose_nothing(session: mt.Session, clean_env: Path) -> None:
    mt.create_table("race", {"worker": mt.Int, "n": mt.Int})
    script = "import sys, test_table; test_table._insert_many(sys.argv[1], sys.argv[2], int(sys.argv[3]))"
    env_path = str(Path(__file__).parent)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import sys; sys.path.insert(0, {env_path!r}); {script}",
                str(clean_env),
                session.settings.catalog_url,
                str(w),
            ],
        )
        for w in (1, 2)
    ]
    for proc in procs:
        assert proc.wait(timeout=180) == 0
    t = mt.get_table("race")
    assert t.count() == 200
    for worker in (1, 2):
        values = sorted(t.where(t.worker == worker).select(t.n).collect()["n"])
        assert values == list(range(100))


def test_progress_bar_on_request(db_url: str, clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mt.init(home=clean_env, db_url=db_url, quiet=True, progress=True)
    t = mt.create_table("bar", {"x": mt.Int})
    t.insert([{"x": i} for i in range(3)], quiet=True)
    err = capsys.readouterr().err
    assert "Inserting rows into `bar`: 3 rows [" in err and "rows/s]" in err
    mt.init(home=clean_env, db_url=db_url, quiet=True)  # default: only when stderr is a terminal
    mt.get_table("bar").insert([{"x": 3}], quiet=True)
    assert "Inserting" not in capsys.readouterr().err
