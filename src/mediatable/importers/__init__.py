"""Turn what users pass to `insert()` into a list of row dicts: lists, DataFrames, CSV and Parquet files."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from mediatable.errors import DataError


def read_rows(
    source: Iterable[Mapping[str, Any]] | pd.DataFrame | str | os.PathLike[str],
) -> list[Mapping[str, Any]]:
    """Rows as a list of dicts from a list of dicts, a pandas DataFrame, or a `.csv` / `.parquet` file.

    Raises:
        DataError: the source is of an unknown kind or the file cannot be read.

    Examples:
        >>> read_rows([{'a': 1}])
        [{'a': 1}]
        >>> read_rows(pd.DataFrame({'a': [1, 2]}))
        [{'a': 1}, {'a': 2}]
    """
    if isinstance(source, pd.DataFrame):
        return source.to_dict(orient="records")
    if isinstance(source, str | os.PathLike):
        path = Path(source).expanduser()
        suffix = path.suffix.lower()
        try:
            if suffix in (".csv", ".tsv"):
                frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
            elif suffix in (".parquet", ".pq"):
                frame = pd.read_parquet(path)
            else:
                raise DataError(f"cannot import {path.name}: use a .csv, .tsv or .parquet file")
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {path}: {exc}") from exc
        return frame.to_dict(orient="records")
    if isinstance(source, Mapping):
        return [source]
    try:
        return list(source)
    except TypeError as exc:
        raise DataError(
            f"cannot insert a {type(source).__name__}: pass a list of dicts, a DataFrame or a file"
        ) from exc
