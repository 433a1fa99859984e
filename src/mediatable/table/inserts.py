"""Inserting rows: validate, compute the computed columns, store, and feed the views over the table."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa

from mediatable.catalog.catalog import check_choice
from mediatable.errors import InvalidArgument
from mediatable.exec import inserts, keys
from mediatable.exec.executors import executor_for
from mediatable.exec.status import UpdateStatus, plural, progress_bar
from mediatable.importers import BATCH_SIZE, RowSource
from mediatable.table.base import ON_ERROR, TableBase


class Inserts(TableBase):
    """`insert()` of a :class:`~mediatable.table.Table`."""

    def insert(
        self,
        rows: Iterable[Mapping[str, Any]] | pd.DataFrame | pa.Table | str | os.PathLike[str] | None = None,
        /,
        *,
        on_error: str | None = None,
        on_conflict: str = "error",
        executor: str | None = None,
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
            on_conflict: for tables with a primary key, a row whose key is stored already:
                'error' (default: nothing of the call is inserted), 'ignore' (the row is skipped) or
                'update' (the stored row takes the row's values; its computed columns recompute).
            executor: where the table's computed columns are computed: 'local', 'ray' or
                'ray://host:port' (default: the `executor` setting, 'local'); views compute locally.
            quiet: do not print the summary line.
            **values: a single row given as keyword arguments (`t.insert(image='a.jpg', label='cat')`).

        Returns:
            An :class:`UpdateStatus`, e.g. `3 rows inserted, 6 values computed.`

        With `media_validation='on_write'` (see :func:`mediatable.create_table`), each media URL is
        checked with a HEAD request first; rows whose media cannot be reached are not inserted and
        count as errors of the insert (`status.errors` says which row, column and URL, and why).

        Raises:
            DataError: an unknown column, a value of the wrong type, or a key that exists already
                (`on_conflict='error'`); names the row index, the column and the value. Nothing of
                the call is inserted.

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
        check_choice("on_conflict", on_conflict, keys.ON_CONFLICT)
        self._check_writable()
        if self._meta.is_view:
            raise InvalidArgument(f"{self.path!r} is a view: insert into its base table {self._meta.base.path!r}")
        if rows is not None and values:
            raise InvalidArgument("pass rows or keyword values, not both")
        if rows is None:
            if not values:
                raise InvalidArgument("insert() needs rows (a list of dicts, a DataFrame or a file) or keyword values")
            rows = [values]
        session = self._session
        runner = executor_for(session, executor)
        meta = self._current_meta()  # the catalog's schema, not this handle's: others may have changed it
        column_types = {name: c.col_type for name, c in meta.own_columns.items()}
        source = rows if isinstance(rows, RowSource) else RowSource(rows)
        batches = source.batches(BATCH_SIZE, column_types)
        bar = progress_bar(session.settings, f"Inserting rows into `{meta.name}`", total=None)
        try:
            status = inserts.insert(
                session,
                meta,
                batches,
                on_error=on_error,
                on_conflict=on_conflict,
                progress=bar.update,
                executor=runner,
            )
        finally:
            bar.close()
        self._refresh()
        if not quiet:
            print(f"Inserted {plural(status.num_rows, 'row')} with {plural(status.num_excs, 'error')}.")
            for message in status.errors[:10]:
                print(f"  {message}")
        return status
