"""Result columns to Arrow and pandas with real dtypes: nullable Int64, float64, bool, UTC timestamps,
JSON as text in Arrow, media as their URL or local path (by choice)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mediatable import types as ts
from mediatable.catalog.catalog import check_choice
from mediatable.errors import InvalidArgument
from mediatable.exec.media_cells import MediaCell

MEDIA_AS = ("url", "path")


def media_values(values: Sequence[Any], media: str, name: str) -> list[Any]:
    """A media column as URLs or local paths; values computed in memory (no file yet) cannot be."""
    check_choice("media", media, MEDIA_AS)
    out: list[Any] = []
    for value in values:
        if value is None or isinstance(value, str):
            out.append(value)
        elif isinstance(value, MediaCell):
            out.append(value.url if media == "url" else value.path)
        else:
            raise InvalidArgument(
                f"column {name!r} holds media computed in memory ({type(value).__name__}), which has no URL or "
                "path: store it as a computed column first, or use collect()"
            )
    return out


def arrow_array(values: Sequence[Any], col_type: ts.ColumnType, media: str, name: str) -> pa.Array:
    """One result column as an Arrow array of the matching type.

    Examples:
        >>> arrow_array([1, None], ts.Int, "url", "n").type
        DataType(int64)
    """
    if col_type.is_media:
        return pa.array(media_values(values, media, name), type=pa.string())
    if col_type == ts.Json:
        return pa.array([None if v is None else json.dumps(v) for v in values], type=pa.string())
    if isinstance(col_type, ts.ArrayType):
        return pa.array([None if v is None else np.asarray(v).tolist() for v in values])
    arrow_type = {
        "Int": pa.int64(),
        "Float": pa.float64(),
        "Bool": pa.bool_(),
        "String": pa.string(),
        "Timestamp": pa.timestamp("us", tz="UTC"),
    }.get(col_type.name)
    return pa.array(list(values), type=arrow_type)


def pandas_series(values: Sequence[Any], col_type: ts.ColumnType, media: str, name: str) -> pd.Series:
    """One result column as a pandas Series: `Int64` (nullable), `float64`, `bool` (`boolean` with
    missing values), `datetime64[ns, UTC]`, objects for the rest.

    Examples:
        >>> pandas_series([1, None], ts.Int, "url", "n").dtype
        Int64Dtype()
        >>> pandas_series([True, False], ts.Bool, "url", "b").dtype
        dtype('bool')
    """
    if col_type.is_media:
        return pd.Series(media_values(values, media, name), name=name, dtype=object)
    if col_type == ts.Int:
        return pd.Series(pd.array(list(values), dtype="Int64"), name=name)
    if col_type == ts.Float:
        return pd.Series(np.array([np.nan if v is None else v for v in values], dtype=np.float64), name=name)
    if col_type == ts.Bool:
        if any(v is None for v in values):
            return pd.Series(pd.array(list(values), dtype="boolean"), name=name)
        return pd.Series(list(values), name=name, dtype=bool)
    if col_type == ts.Timestamp:
        return pd.Series(pd.to_datetime(list(values), utc=True), name=name)
    return pd.Series(list(values), name=name, dtype=object)
