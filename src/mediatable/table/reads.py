"""Reading a table: queries started from the handle (`t.select(...)`, `t.where(...)`, `t.head()`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from mediatable.table.base import TableBase
from mediatable.table.query import Query
from mediatable.table.result import ResultSet


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

    def limit(self, n: int) -> Query:
        """Start a query returning at most `n` rows."""
        return self._query().limit(n)

    def collect(self) -> ResultSet:
        """All rows, all columns."""
        return self._query().collect()

    def head(self, n: int = 10) -> ResultSet:
        """The first `n` rows."""
        return self._query().head(n)

    def count(self) -> int:
        """Number of rows."""
        return self._query().count()

    def to_pandas(self) -> pd.DataFrame:
        """All rows as a pandas DataFrame."""
        return self.collect().to_pandas()
