"""Reading a table: queries started from the handle (`t.select(...)`, `t.where(...)`, `t.head()`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pyarrow as pa

from mediatable.table import display
from mediatable.table.alias import TableAlias
from mediatable.table.base import TableBase
from mediatable.table.query import Query
from mediatable.table.result import ResultSet

_PREVIEW_ROWS = 5


class Reads(TableBase):
    """Query entry points of a :class:`~mediatable.table.Table`; each starts a :class:`Query`."""

    def select(self, *exprs: Any, **named: Any) -> Query:
        """Start a query with output columns. See :meth:`Query.select`.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('nums', {'n': mt.Int})
            Created table 'nums'.
            >>> _ = t.insert([{'n': 1}, {'n': 2}], quiet=True)
            >>> t.select(t.n, double=t.n * 2).collect()['double']
            [2, 4]
        """
        return self._query().select(*exprs, **named)

    def where(self, predicate: Any) -> Query:
        """Start a query with a filter. See :meth:`Query.where`."""
        return self._query().where(predicate)

    def order_by(self, *exprs: Any, asc: bool = True) -> Query:
        """Start a query with a sort order. See :meth:`Query.order_by`."""
        return self._query().order_by(*exprs, asc=asc)

    def group_by(self, *keys: Any) -> Query:
        """Start a grouped query. See :meth:`Query.group_by`."""
        return self._query().group_by(*keys)

    def join(self, other: Any, *, on: Any, how: str = "inner") -> Query:
        """Start a query joining another table. See :meth:`Query.join`."""
        return self._query().join(other, on=on, how=how)

    def alias(self, name: str) -> TableAlias:
        """This table under another name, to join it with itself. See :class:`TableAlias`."""
        return TableAlias(self, name)

    def distinct(self) -> Query:
        """Start a query returning distinct rows. See :meth:`Query.distinct`."""
        return self._query().distinct()

    def limit(self, n: int) -> Query:
        """Start a query returning at most `n` rows."""
        return self._query().limit(n)

    def collect(self, *, on_error: str = "abort") -> ResultSet:
        """All rows, all columns. See :meth:`Query.collect`."""
        return self._query().collect(on_error=on_error)

    def head(self, n: int = 10, *, on_error: str = "abort", quiet: bool = False) -> ResultSet:
        """The first `n` rows."""
        return self._query().head(n, on_error=on_error, quiet=quiet)

    def show(self, n: int = 10) -> None:
        """Print the first `n` rows. See :meth:`Query.show`."""
        self._query().show(n)

    def _repr_html_(self) -> str:
        """The table for notebooks: its schema and first rows, with inline thumbnails."""
        meta = self._fresh()
        preview = self._query().head(_PREVIEW_ROWS, on_error="ignore", quiet=True)
        kind = "view" if meta.is_view else "table"
        return display.table_html(
            preview.columns,
            preview.col_types,
            preview._rows,
            caption=f"{kind} {meta.path!r}",
            total=self._query().count(),
        )

    def count(self) -> int:
        """Number of rows."""
        return self._query().count()

    def iter_batches(self, batch_size: int = 1000, *, on_error: str = "abort") -> Iterator[ResultSet]:
        """All rows, streamed `batch_size` at a time. See :meth:`Query.iter_batches`."""
        return self._query().iter_batches(batch_size, on_error=on_error)

    def to_pandas(self, *, media: str = "url", on_error: str = "abort") -> pd.DataFrame:
        """All rows as a pandas DataFrame with real dtypes. See :meth:`ResultSet.to_pandas`."""
        return self._query().to_pandas(media=media, on_error=on_error)

    def to_arrow(self, *, media: str = "url", on_error: str = "abort") -> pa.Table:
        """All rows as a `pyarrow.Table`. See :meth:`ResultSet.to_arrow`."""
        return self._query().to_arrow(media=media, on_error=on_error)
