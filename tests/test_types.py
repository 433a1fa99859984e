"""Column types: checking and converting values one at a time and a column at a time (types.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

import mediatable as mt
from mediatable import types as ts
from mediatable.errors import DataError
from mediatable.importers import none_if_missing

COLUMNS: dict[str, list[list[Any]]] = {
    "String": [["a", "", None, "ü"], ["a", 1], ["a", b"b"], ["a", math.nan], ["a", pd.NA]],
    "Int": [[1, None, 2**62, -3], [1, True], [1, 2.0], [1, np.int64(4)], [1, math.nan], ["1"]],
    "Float": [
        [0.5, None, -1.0, math.inf],
        [1, 2, 3],
        [1, 0.5, None],
        [0.5, math.nan],
        [0.5, True],
        [0.5, np.float32(1.5)],
        [0.5, "x"],
        [math.inf, -math.inf],
    ],
    "Bool": [[True, False, None], [True, 1], [True, np.bool_(False)], [True, math.nan]],
    "Image": [
        ["https://h/a.jpg", None, "https://h/b/c.png"],
        ["https://h/a.jpg", "HTTPS://H/b.jpg"],
        ["s3://b/a.jpg", "ftp://h/x.jpg"],
        ["s3://b/a.jpg", 42],
        ["s3://b/a.jpg", math.nan],
    ],
}


def _one_by_one(col_type: ts.ColumnType, values: list[Any]) -> list[Any] | type[DataError]:
    try:
        return [col_type.validate(none_if_missing(v)) for v in values]
    except DataError:
        return DataError


@pytest.mark.parametrize(
    ("type_name", "values"), [(name, values) for name, cases in COLUMNS.items() for values in cases]
)
def test_a_column_at_a_time_gives_what_one_at_a_time_gives(type_name: str, values: list[Any]) -> None:
    col_type = getattr(mt, type_name)
    expected = _one_by_one(col_type, values)
    got = col_type.validate_many(list(values))
    if got is None:  # the caller checks these values one by one
        return
    assert expected is not DataError, f"{values!r} passed the column check but fail one by one"
    assert [(type(v), v) for v in got] == [(type(v), v) for v in expected]


def test_the_fast_path_takes_plain_columns() -> None:
    urls = ["https://h/a.jpg", None, "https://h/b.jpg"]
    assert mt.Image.validate_many(urls) is urls
    ints = [1, None, 3]
    assert mt.Int.validate_many(ints) is ints
    assert mt.Float.validate_many([1, None, 2.5]) == [1.0, None, 2.5]
    assert mt.Float.validate_many([0.5, math.nan]) is None  # NaN is a missing cell: validate() says so
    assert mt.Int.validate_many([1, True]) is None
