"""Rows from what users pass to `insert()` or `create_table(source=...)`, read in bounded batches.

A :class:`RowSource` wraps one source — a list or any iterable of dicts (a generator, a bucket
listing), a pandas DataFrame, a pyarrow Table, or a `.csv` / `.tsv` / `.parquet` file — and
offers two things: the column types the data has (:meth:`RowSource.infer_schema`) and the rows
as lists of plain dicts, a bounded batch at a time (:meth:`RowSource.batches`). Parquet files,
DataFrames, Arrow tables and iterables are never turned into one big list of dicts: memory holds
one batch of Python rows at a time (plus, for CSV, the file as Arrow columns).

Tabular data goes through Arrow, so every source gets the same types: integers stay integers
(a pandas float column that only holds whole numbers and NaN — what pandas makes of an integer
column with missing values — becomes a nullable Int), missing cells become None, timestamps
become `datetime`, lists and structs become JSON values.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from mediatable import types as ts
from mediatable.errors import DataError, InvalidArgument

__all__ = ["BATCH_SIZE", "RowSource", "none_if_missing"]

BATCH_SIZE = 1000
"""Rows per batch: large enough to keep downloads in flight, small enough to bound memory."""

_FILE_KINDS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
_SIMPLE_CASTS = {ts.String: pa.large_string(), ts.Float: pa.float64(), ts.Int: pa.int64()}


class RowSource:
    """One source of rows, readable in batches; see the module docstring for what it accepts.

    Lifecycle: built once per `insert()` / `create_table()` call (`insert()` also takes one as it
    is). Files, DataFrames, Arrow tables and lists can be read any number of times; a generator or
    iterator only once (a second :meth:`batches` raises).

    Args:
        source: a list or iterable of dicts, a DataFrame, a pyarrow Table, or a file path.

    Raises:
        DataError: the source is of an unknown kind or the file cannot be read.

    Examples:
        >>> rows = RowSource(pd.DataFrame({'n': [1, None, 3], 'name': ['a', 'b', None]}))
        >>> rows.infer_schema()
        {'n': Int, 'name': String}
        >>> list(rows.batches(2))
        [[{'n': 1, 'name': 'a'}, {'n': None, 'name': 'b'}], [{'n': 3, 'name': None}]]
    """

    def __init__(self, source: Any) -> None:
        self.description = _describe(source)
        self._arrow: pa.Table | None = None
        self._parquet: pq.ParquetFile | None = None
        self._python: Iterable[Any] | None = None
        self._peeked: list[Any] = []
        self._consumed = False
        self._renames: dict[str, str] = {}
        if isinstance(source, pa.Table):
            self._arrow = _decoded(source)
        elif isinstance(source, pd.DataFrame):
            self._arrow = _from_pandas(source)
        elif isinstance(source, str | os.PathLike):
            self._open_file(Path(source).expanduser())
        elif isinstance(source, Mapping):
            self._python = [source]
        elif isinstance(source, Iterable) and not isinstance(source, bytes):
            self._python = source
        else:
            raise DataError(
                f"cannot read rows from a {type(source).__name__}: pass a list of dicts, a DataFrame, "
                "a pyarrow Table, or a .csv / .parquet file"
            )

    def __repr__(self) -> str:
        return f"RowSource({self.description})"

    def _open_file(self, path: Path) -> None:
        kind = _FILE_KINDS.get(path.suffix.lower())
        if kind is None:
            raise DataError(f"cannot import {path.name}: use a .csv, .tsv or .parquet file")
        try:
            if kind == "parquet":
                self._parquet = pq.ParquetFile(path)
            else:
                parse = pa_csv.ParseOptions(delimiter="\t" if kind == "tsv" else ",")
                convert = pa_csv.ConvertOptions(strings_can_be_null=True)  # an empty cell is missing, as in pandas
                self._arrow = _decoded(pa_csv.read_csv(path, parse_options=parse, convert_options=convert))
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read {path}: {exc}") from exc

    # -- schema -----------------------------------------------------------------------------------
    def infer_schema(self) -> dict[str, ts.ColumnType]:
        """Column name -> the type its values have (names as in the source).

        Iterables are inferred from their first batch (which is kept, not lost); a column with no
        value there is a String.

        Raises:
            DataError: a column holds data no column type fits (binary, mixed kinds).
        """
        if self._arrow is not None or self._parquet is not None:
            schema = self._arrow.schema if self._arrow is not None else self._parquet.schema_arrow
            out = {}
            for field in schema:
                out[field.name] = _arrow_column_type(field.type, field.name)
            return out
        self._peek()
        found: dict[str, ts.ColumnType | None] = {}
        for index, record in enumerate(self._peeked):
            for name, value in _as_record(record, index).items():
                value = none_if_missing(value)
                kind = ts.infer_type(value) if value is not None else None
                if found.get(name) is None or (found[name] == ts.Int and kind == ts.Float):
                    found[name] = kind  # the first value decides; ints widen to floats
        return {name: kind or ts.String for name, kind in found.items()}

    def _peek(self) -> None:
        if self._python is not None and not self._peeked and not self._consumed:
            if isinstance(self._python, list | tuple):
                self._peeked = list(self._python[:BATCH_SIZE])
            else:
                self._python = iter(self._python)
                self._peeked = list(itertools.islice(self._python, BATCH_SIZE))

    def renamed(self, renames: Mapping[str, str]) -> RowSource:
        """This source with columns renamed (source name -> new name); the rest keep their names.

        Examples:
            >>> list(RowSource([{'Image URL': 'a.jpg'}]).renamed({'Image URL': 'image'}).batches())
            [[{'image': 'a.jpg'}]]
        """
        self._renames = {**self._renames, **renames}
        return self

    # -- rows -------------------------------------------------------------------------------------
    def batches(
        self, size: int = BATCH_SIZE, column_types: Mapping[str, ts.ColumnType] | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """The rows as lists of at most `size` dicts (missing cells are None).

        Args:
            size: rows per batch.
            column_types: the target table's types by column name: tabular columns are converted
                where that loses nothing (numbers for a String column, whole floats for an Int
                column); anything else is left for the table's validation to report by row.

        Raises:
            InvalidArgument: a one-shot iterable is read a second time.
        """
        if size < 1:
            raise InvalidArgument(f"batch size must be at least 1, not {size}")
        if self._arrow is not None:
            for batch in self._arrow.to_batches(max_chunksize=size):
                yield _python_rows(self._rename_arrow(batch), column_types)
        elif self._parquet is not None:
            for batch in self._parquet.iter_batches(batch_size=size):
                yield _python_rows(self._rename_arrow(_decoded(pa.Table.from_batches([batch]))), column_types)
        elif self._renames:
            for batch in self._python_batches(size):
                yield [{self._renames.get(k, k): v for k, v in row.items()} for row in batch]
        else:
            yield from self._python_batches(size)

    def _rename_arrow(self, batch: Any) -> Any:
        if not self._renames:
            return batch
        return batch.rename_columns([self._renames.get(name, name) for name in batch.schema.names])

    def _python_batches(self, size: int) -> Iterator[list[dict[str, Any]]]:
        if isinstance(self._python, list | tuple):
            for start in range(0, len(self._python), size):
                chunk = self._python[start : start + size]
                yield (
                    list(chunk)
                    if set(map(type, chunk)) == {dict}
                    else [_as_record(r, start + i) for i, r in enumerate(chunk)]
                )
            return
        if self._consumed:
            raise InvalidArgument(f"{self.description} was already read: an iterator can be inserted only once")
        self._consumed = True
        rows = itertools.chain(self._peeked, iter(self._python))  # type: ignore[arg-type]
        self._peeked = []
        index = 0
        while batch := list(itertools.islice(rows, size)):
            yield [_as_record(r, index + i) for i, r in enumerate(batch)]
            index += len(batch)


# -- helpers --------------------------------------------------------------------------------------


def _describe(source: Any) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    if isinstance(source, pd.DataFrame | pa.Table):
        return f"a {type(source).__name__} of {len(source)} rows"
    return f"a {type(source).__name__}"


def _as_record(record: Any, index: int) -> dict[str, Any]:
    """The record as a dict: a dict as it is (readers copy what they keep), another mapping copied."""
    if type(record) is dict:
        return record
    if not isinstance(record, Mapping):
        raise DataError(f"row {index}: expected a dict of column values, got {type(record).__name__}", row=index)
    return dict(record)


def none_if_missing(value: Any) -> Any:
    """pandas and CSV give NaN/NaT/NA for missing cells; a missing cell is None."""
    if value is None or isinstance(value, list | dict | tuple | str):
        return value
    try:
        return None if pd.isna(value) is True else value
    except (TypeError, ValueError):
        return value


def _from_pandas(frame: pd.DataFrame) -> pa.Table:
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise DataError(f"cannot read the DataFrame's columns as data: {exc}") from exc
    table = _decoded(table).replace_schema_metadata(None)
    for index, field in enumerate(table.schema):
        column = table.column(index)
        if pa.types.is_floating(field.type) and column.null_count and _whole_numbers(column):
            # pandas keeps integers with missing values as float64 + NaN: give them back as nullable ints
            table = table.set_column(index, field.name, column.cast(pa.int64()))
    return table


def _whole_numbers(column: pa.ChunkedArray) -> bool:
    valid = column.drop_null()
    if len(valid) == 0:
        return False
    finite = pc.all(pc.is_finite(valid)).as_py()
    return bool(finite and pc.all(pc.equal(valid, pc.floor(valid))).as_py())


def _decoded(table: pa.Table) -> pa.Table:
    """Dictionary (pandas category) columns as plain values; dates and decimals as timestamps and floats."""
    for index, field in enumerate(table.schema):
        kind = field.type
        target = None
        if pa.types.is_dictionary(kind):
            target = kind.value_type
        elif pa.types.is_date(kind):
            target = pa.timestamp("us")
        elif pa.types.is_decimal(kind):
            target = pa.float64()
        if target is not None:
            table = table.set_column(index, field.name, table.column(index).cast(target))
    return table


def _arrow_column_type(kind: pa.DataType, name: str) -> ts.ColumnType:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_boolean(kind):
        return ts.Bool
    if pa.types.is_integer(kind):
        return ts.Int
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return ts.Float
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        return ts.String
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return ts.Timestamp
    if pa.types.is_nested(kind):
        return ts.Json
    raise DataError(f"column {name!r} holds {kind} data, which no column type fits", column=name)


def _python_rows(batch: pa.RecordBatch | pa.Table, column_types: Mapping[str, ts.ColumnType] | None) -> list[dict]:
    if column_types:
        for index, field in enumerate(batch.schema):
            target = _SIMPLE_CASTS.get(column_types.get(field.name))  # type: ignore[arg-type]
            if target is None and column_types.get(field.name, ts.Int).is_media:
                target = pa.large_string()
            if target is None or field.type == target or not _castable(field.type, target):
                continue
            try:
                batch = batch.set_column(index, field.name, batch.column(index).cast(target))
            except pa.ArrowInvalid:
                continue  # e.g. 2.5 for an Int column: validation names the row and value
    return batch.to_pylist()


def _castable(source: pa.DataType, target: pa.DataType) -> bool:
    numeric = pa.types.is_integer(source) or pa.types.is_floating(source)
    if pa.types.is_large_string(target):
        return numeric or pa.types.is_string(source)
    return numeric
