"""`Query`: the lazy, chainable query users build — `t.where(...).select(...).order_by(...).limit(n)`.

Building checks and types every expression; nothing runs until `collect()` (or `count()`, `head()`),
which hands a :class:`~mediatable.exec.query.QuerySpec` to :mod:`mediatable.exec.query`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from mediatable import types as ts
from mediatable.errors import ExprError, InvalidArgument
from mediatable.exec import query as run
from mediatable.exec.query import OrderKey, QuerySpec
from mediatable.exprs import BoolOp, ColumnRef, Expr, as_expr
from mediatable.session import Session
from mediatable.table.result import ResultSet


class Query:
    """A lazy query over one table or view. Each method returns a new query.

    Examples:
        >>> import mediatable as mt, tempfile
        >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> t = mt.create_table('films', {'title': mt.String, 'year': mt.Int})
        Created table 'films'.
        >>> _ = t.insert([{'title': 'Alien', 'year': 1979}, {'title': 'Heat', 'year': 1995}], quiet=True)
        >>> t.where(t.year > 1980).select(t.title, decade=t.year // 10 * 10).collect()[0]
        {'title': 'Heat', 'decade': 1990}
    """

    def __init__(self, session: Session, spec: QuerySpec) -> None:
        self._session = session
        self._spec = spec

    def _copy(self, **changes: Any) -> Query:
        return Query(self._session, dataclasses.replace(self._spec, **changes))

    def select(self, *exprs: Any, **named: Any) -> Query:
        """Choose output columns; keyword arguments name them (`w=t.image.width`)."""
        items: list[tuple[str, Expr]] = []
        taken: set[str] = set()
        for expr in exprs:
            expr = self._check(expr)
            name = _unique(expr.default_name(), taken)
            items.append((name, expr))
        for name, expr in named.items():
            if name in taken:
                raise InvalidArgument(f"duplicate output name {name!r}")
            taken.add(name)
            items.append((name, self._check(expr)))
        return self._copy(select=tuple(items))

    def where(self, predicate: Any) -> Query:
        """Keep rows where `predicate` is True (combined with earlier filters by AND)."""
        predicate = self._check(predicate)
        if predicate.col_type != ts.Bool:
            raise ExprError(f"where() needs a boolean expression, got {predicate.col_type!r}: {predicate!r}")
        combined = predicate if self._spec.where is None else BoolOp("and", [self._spec.where, predicate])
        return self._copy(where=combined)

    def order_by(self, *exprs: Any, asc: bool = True) -> Query:
        """Sort by the given expressions (ascending unless `asc=False`); None values sort last."""
        keys = [OrderKey(self._check(e), asc) for e in exprs]
        return self._copy(order=(*self._spec.order, *keys))

    def limit(self, n: int) -> Query:
        """Return at most `n` rows."""
        if not isinstance(n, int) or n < 0:
            raise InvalidArgument(f"limit must be a non-negative int, not {n!r}")
        return self._copy(limit=n)

    def head(self, n: int = 10) -> ResultSet:
        """The first `n` rows."""
        return self.limit(n).collect()

    def count(self) -> int:
        """Number of rows matching the filter (counted by the database when the filter runs in SQL)."""
        return run.count(self._session, self._spec)

    def to_pandas(self) -> pd.DataFrame:
        """Shortcut for `collect().to_pandas()`."""
        return self.collect().to_pandas()

    def collect(self) -> ResultSet:
        """Run the query.

        Returns:
            A :class:`ResultSet`. Image cells are PIL images opened lazily from the file cache;
            Video/Audio/Document cells are local file paths; cells that failed are None.
        """
        names, types, rows = run.collect(self._session, self._spec)
        return ResultSet(names, types, rows)

    def _check(self, value: Any) -> Expr:
        expr = as_expr(value)
        meta = self._spec.meta
        visible = meta.columns
        for node in expr.walk():
            if isinstance(node, ColumnRef) and (
                node.column.name not in visible or node.column.owner_id not in meta.owner_ids()
            ):
                raise ExprError(f"{node!r} is not a column of {meta.path!r}")
        return expr


def _unique(name: str, taken: set[str]) -> str:
    candidate, i = name, 1
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    taken.add(candidate)
    return candidate
