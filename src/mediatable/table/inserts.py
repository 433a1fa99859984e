"""Inserting rows: validate, compute the computed columns, store, and feed the views over the table."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

from mediatable.catalog.catalog import check_choice
from mediatable.errors import DataError, InvalidArgument
from mediatable.exec import compute, views
from mediatable.exec.rows import ROWID, TableSql
from mediatable.exec.status import UpdateStatus, plural, progress_bar
from mediatable.importers import BATCH_SIZE, RowSource, none_if_missing
from mediatable.table.base import ON_ERROR, TableBase


class Inserts(TableBase):
    """`insert()` of a :class:`~mediatable.table.Table`."""

    def insert(
        self,
        rows: Iterable[Mapping[str, Any]] | pd.DataFrame | pa.Table | str | os.PathLike[str] | None = None,
        /,
        *,
        on_error: str | None = None,
        quiet: bool = False,
        **values: Any,
    ) -> UpdateStatus:
        """Insert rows; media cells are URLs or paths, stored as references (nothing is downloaded).

        Computed columns are filled for the new rows, and views over this table get their rows.
        Rows are read, computed and written in batches of 1,000, so a generator or a bucket listing
        of any length inserts in bounded memory. The whole call is one transaction: all or nothing.

        Args:
            rows: a list or any iterable of dicts (a generator, :func:`mediatable.list_objects`), a
                pandas DataFrame, a pyarrow Table, or a path to a CSV / TSV / Parquet file.
            on_error: None (default): each computed column follows its own `on_error` (by default
                'ignore': a failing cell keeps its error, the other cells and rows are stored);
                'abort': any failing computed value aborts the whole insert, nothing is stored.
            quiet: do not print the summary line.
            **values: a single row given as keyword arguments (`t.insert(image='a.jpg', label='cat')`).

        Returns:
            An :class:`UpdateStatus`, e.g. `3 rows inserted, 6 values computed.`

        Raises:
            DataError: an unknown column or a value of the wrong type; names the row index,
                the column and the value. Nothing of the call is inserted.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('photos', {'image': mt.Image, 'label': mt.String})
            Created table 'photos'.
            >>> t.insert([{'image': 's3://bucket/cat.jpg', 'label': 'cat'}])
            Inserted 1 row with 0 errors.
            1 row inserted, 2 values computed.
            >>> t.insert(image='https://example.com/dog.jpg', label='dog', quiet=True)
            1 row inserted, 2 values computed.
            >>> t.insert({'image': f'gs://bucket/{i}.jpg', 'label': str(i)} for i in range(2500))
            Inserted 2500 rows with 0 errors.
            2500 rows inserted, 5000 values computed.
        """
        if on_error is not None:
            check_choice("on_error", on_error, ON_ERROR)
        self._fresh()  # compute what the catalog says now, whatever this handle saw before
        if self._meta.is_view:
            raise InvalidArgument(f"{self.path!r} is a view: insert into its base table {self._meta.base.path!r}")
        if rows is not None and values:
            raise InvalidArgument("pass rows or keyword values, not both")
        if rows is None:
            if not values:
                raise InvalidArgument("insert() needs rows (a list of dicts, a DataFrame or a file) or keyword values")
            rows = [values]
        session, meta = self._session, self._meta
        column_types = {name: c.col_type for name, c in meta.own_columns.items()}
        source = rows if isinstance(rows, RowSource) else RowSource(rows)
        batches = source.batches(BATCH_SIZE, column_types)

        status = UpdateStatus(operation="inserted")
        stored = list(meta.own_columns.values())
        computed = compute.computed_columns(meta)
        view_metas = [session.catalog.get_table(p) for p in session.catalog.view_paths(meta)]
        bar = progress_bar(session.settings, f"Inserting rows into `{meta.name}`", total=None)
        num_rows = 0
        try:
            with session.cache_lease() as lease, contextlib.ExitStack() as transaction:
                conn = None
                for batch in batches:
                    validated = self._validate_rows(batch, first_index=num_rows)
                    compute.compute(session, meta, lease, validated, computed, on_error)
                    if conn is None:  # opened once the first batch is computed: a short insert locks briefly
                        conn = transaction.enter_context(session.engine.begin())
                    rowids = TableSql(meta).insert(conn, validated, stored)
                    for row, rowid in zip(validated, rowids, strict=True):
                        row[ROWID] = rowid
                    status = compute.count(status, validated, stored, meta.path)
                    for view in view_metas:
                        status = status + views.propagate(session, view, lease, validated, on_error, conn=conn)
                    num_rows += len(validated)
                    bar.update(len(validated))
        finally:
            bar.close()
        status.num_rows = num_rows
        if not quiet:
            print(f"Inserted {plural(num_rows, 'row')} with {plural(status.num_excs, 'error')}.")
        return status

    def _validate_rows(self, records: Sequence[Mapping[str, Any]], first_index: int = 0) -> list[dict[str, Any]]:
        columns = self._meta.own_columns
        out: list[dict[str, Any]] = []
        for index, record in enumerate(records, start=first_index):
            if not isinstance(record, Mapping):
                raise DataError(
                    f"row {index}: expected a dict of column values, got {type(record).__name__}", row=index
                )
            row: dict[str, Any] = {}
            for name, value in record.items():
                column = columns.get(name)
                if column is None:
                    raise DataError(
                        f"row {index}: unknown column {name!r} (columns of {self.path!r}: "
                        f"{', '.join(c for c, col in columns.items() if not col.is_computed)})",
                        row=index,
                        column=name,
                    )
                if column.is_computed:
                    raise DataError(
                        f"row {index}: column {name!r} is computed and cannot be set", row=index, column=name
                    )
                try:
                    row[name] = column.col_type.validate(none_if_missing(value))
                except DataError as exc:
                    raise type(exc)(f"row {index}, column {name!r}: {exc}", row=index, column=name) from exc
            out.append(row)
        return out
