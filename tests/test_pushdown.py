"""Filters run in SQL where they can and give exactly what Python gives, on SQLite and PostgreSQL.

Each predicate is checked twice over the same rows: as a filter (pushed down, which `repr(query)`
confirms) and as an output value computed in Python; the kept rows must be the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import mediatable as mt


@pytest.fixture
def t(db_home: Path) -> mt.Table:
    t = mt.create_table("things", {"n": mt.Int, "x": mt.Float, "label": mt.String, "meta": mt.Json})
    labels = ["Cat", "dog", "wildcat", "", "Catalog", None, "a%b", "under_score"]
    rows = []
    for i in range(-12, 28):
        flag = [True, False, 1, 0, "1", 1.0][i % 6]
        meta: Any = {"kind": ["odd", "even"][i % 2], "size": i % 5, "nested": {"tag": labels[i % 8]}, "flag": flag}
        if i % 7 == 0:
            meta = None if i % 2 else {"kind": 5}
        rows.append({"n": None if i % 11 == 0 else i, "x": i / 4, "label": labels[i % 8], "meta": meta})
    t.insert(rows, quiet=True)
    return t


PREDICATES = {
    "mod": lambda t: t.n % 10 == 3,
    "mod negative divisor": lambda t: t.n % -4 == -1,
    "floordiv": lambda t: t.n // 3 == -2,
    "truediv": lambda t: t.n / 4 > 2.5,
    "arith": lambda t: (t.n * 2 + 1 - t.x) >= 10,
    "isin": lambda t: t.n.isin([1, 2, 3, -5]),
    "is None": lambda t: t.n == None,  # noqa: E711
    "is not None": lambda t: t.label != None,  # noqa: E711
    "lower": lambda t: t.label.lower() == "cat",
    "upper": lambda t: t.label.upper() == "CATALOG",
    "contains": lambda t: t.label.contains("cat"),
    "contains like chars": lambda t: t.label.contains("%"),
    "startswith": lambda t: t.label.startswith("Cat"),
    "endswith": lambda t: t.label.endswith("cat"),
    "endswith empty": lambda t: t.label.endswith(""),
    "len": lambda t: t.label.len() > 3,
    "json string": lambda t: t.meta["kind"] == "odd",
    "json number": lambda t: t.meta["size"] == 3,
    "json nested": lambda t: t.meta["nested"]["tag"] == "dog",
    "json type-exact": lambda t: t.meta["kind"] == 5,
    "json true equals 1": lambda t: t.meta["flag"] == 1,  # as in Python: True == 1 == 1.0, never '1'
    "json false equals 0.0": lambda t: t.meta["flag"] == 0.0,
    "json not equal string": lambda t: t.meta["kind"] != "odd",  # a number there is != 'odd'; None is not kept
    "json not equal 1": lambda t: t.meta["flag"] != 1,
    "json nested not equal": lambda t: t.meta["nested"]["tag"] != "dog",
    "combined": lambda t: (t.n % 2 == 0) & ~t.label.startswith("C") | t.n.isin([7]),
}


@pytest.mark.parametrize("name", list(PREDICATES))
def test_pushed_down_filters_match_python(t: mt.Table, name: str) -> None:
    predicate = PREDICATES[name](t)
    query = t.where(predicate).order_by(t.x).select(t.x)
    assert "in Python" not in repr(query), repr(query)
    in_sql = query.collect()["x"]
    evaluated = t.order_by(t.x).select(t.x, keep=predicate).collect()
    in_python = [row["x"] for row in evaluated if row["keep"] is True]
    assert in_sql == in_python
    assert 0 < len(in_sql) < len(evaluated) or name == "endswith empty"


def test_wrong_typed_literals_fail_when_built(t: mt.Table) -> None:
    with pytest.raises(mt.ExprError, match="cannot compare Int with String"):
        t.n > "abc"  # noqa: B015
    with pytest.raises(mt.ExprError, match="cannot compare"):
        t.label == 3  # noqa: B015
    with pytest.raises(mt.ExprError, match="isin"):
        t.n.isin(["a"])
    with pytest.raises(mt.ExprError, match="cannot compare Int with Json"):
        t.n == [1]  # noqa: B015
    with pytest.raises(mt.ExprError, match="cannot compare String with Json"):
        t.label != {"a": 1}  # noqa: B015
    assert (t.meta["nested"] == {"tag": "dog"}) is not None  # a dict literal compares with Json
    assert (t.x > 1) is not None and (t.meta["kind"] == 5) is not None  # numbers mix; JSON compares with anything


def test_division_by_a_column_stays_in_python_and_raises_on_zero(t: mt.Table) -> None:
    query = t.where(t.x / (t.n - 1) > 0).select(t.n)  # n == 1 in one row
    assert "in Python" in repr(query)
    with pytest.raises(mt.ComputeError, match="ZeroDivisionError"):
        query.collect()
