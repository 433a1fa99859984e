"""`Query`: the lazy, chainable query users build — `t.where(...).select(...).order_by(...).limit(n)`.

Building checks and types every expression; nothing runs until `collect()` (or `count()`, `head()`),
which hands a :class:`~mediatable.exec.query.QuerySpec` to :mod:`mediatable.exec.query`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pyarrow as pa

from mediatable import types as ts
from mediatable.catalog.catalog import check_choice
from mediatable.errors import ExprError, InvalidArgument
from mediatable.exec import joins
from mediatable.exec import query as run
from mediatable.exec.ahead import ahead
from mediatable.exec.failures import ON_ERROR
from mediatable.exec.query import OrderKey, QuerySpec
from mediatable.exprs import BoolOp, ColumnRef, Expr, as_expr
from mediatable.session import Session
from mediatable.table.alias import TableAlias
from mediatable.table.exporting import QueryExports
from mediatable.table.result import ResultSet


class Query(QueryExports):
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

    def __repr__(self) -> str:
        """What the query computes and where each part runs (in SQL or in Python)."""
        return run.explain(self._spec)

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

    def group_by(self, *keys: Any) -> Query:
        """Group rows by `keys`; then select keys and aggregates (`mt.functions.count`, `sum`, `mean`, `min`, `max`).

        Runs as SQL GROUP BY when the filter, keys and aggregated values are stored columns.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('sales', {'shop': mt.String, 'amount': mt.Float})
            Created table 'sales'.
            >>> _ = t.insert([{'shop': 'a', 'amount': 2.0}, {'shop': 'b', 'amount': 1.0}, {'shop': 'a', 'amount': 3.0}],
            ...              quiet=True)
            >>> t.group_by(t.shop).select(t.shop, total=mt.functions.sum(t.amount)).collect()['total']
            [5.0, 1.0]
        """
        if not keys:
            raise InvalidArgument("group_by() needs at least one key, e.g. group_by(t.label)")
        return self._copy(group_by=(*(self._spec.group_by or ()), *(self._check(k) for k in keys)))

    def distinct(self) -> Query:
        """Keep one row of each distinct combination of output values.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('tags', {'tag': mt.String})
            Created table 'tags'.
            >>> _ = t.insert([{'tag': 'b'}, {'tag': 'a'}, {'tag': 'b'}], quiet=True)
            >>> t.select(t.tag).distinct().collect()['tag']
            ['a', 'b']
        """
        return self._copy(distinct=True)

    def limit(self, n: int) -> Query:
        """Return at most `n` rows."""
        if not isinstance(n, int) or n < 0:
            raise InvalidArgument(f"limit must be a non-negative int, not {n!r}")
        return self._copy(limit=n)

    def head(self, n: int = 10, *, on_error: str = "abort", quiet: bool = False) -> ResultSet:
        """The first `n` rows."""
        return self.limit(n).collect(on_error=on_error, quiet=quiet)

    def show(self, n: int = 10) -> None:
        """Print the first `n` rows (a failed value shows its error type and message, with the summary line).

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('pets', {'name': mt.String, 'age': mt.Int})
            Created table 'pets'.
            >>> _ = t.insert([{'name': 'Rex', 'age': 3}, {'name': 'Tom', 'age': 5}], quiet=True)
            >>> t.where(t.age > 4).show()
            name  age
            ----  ---
            Tom   5
        """
        print(repr(self.head(n, on_error="ignore")))

    def count(self) -> int:
        """Number of rows matching the filter (counted by the database when the filter runs in SQL)."""
        return run.count(self._session, self._spec)

    def collect(self, *, on_error: str = "abort", quiet: bool = False) -> ResultSet:
        """Run the query.

        Args:
            on_error: 'abort' (default): a value computed by the query that fails (an expression over
                media, a UDF, a file fetched for the result) raises, naming row, output, URL and cause;
                'ignore': such a value is None and one line per output sums up what failed. Cells
                that failed when a stored computed column was computed are None either way, and
                `.errortype` / `.errormsg` say why.
            quiet: with `on_error='ignore'`, do not print the summary of failed values.

        Returns:
            A :class:`ResultSet`. Image cells are PIL images opened lazily from the file cache;
            Video/Audio/Document cells are local file paths, valid while the result lives (it keeps
            its files pinned in the cache until it is garbage-collected or the session closes).

        Raises:
            ComputeError: a value computed by the query failed (with `on_error='abort'`).
        """
        check_choice("on_error", on_error, ON_ERROR)
        names, types = self._output_names_and_types()
        # Media cells are paths into the file cache: the result holds their lease for as long as it lives.
        lease = self._session.cache.lease() if any(t.is_media for t in types) else None
        try:
            batches = run.run_batches(self._session, self._spec, on_error=on_error, quiet=quiet, lease=lease)
            rows = [row for batch in batches for row in batch]
        except BaseException:
            if lease is not None:
                lease.close()
            raise
        return ResultSet(names, types, rows, self._fallible(), lease=lease)

    def iter_batches(self, batch_size: int = 1000, *, on_error: str = "abort") -> Iterator[ResultSet]:
        """Stream the result, `batch_size` rows at a time; memory is bounded by the batch.

        Media of the next batch is fetched while the consumer works on the current one.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('nums', {'n': mt.Int})
            Created table 'nums'.
            >>> _ = t.insert([{'n': i} for i in range(5)], quiet=True)
            >>> [len(batch) for batch in t.select(t.n).iter_batches(batch_size=2)]
            [2, 2, 1]
        """
        check_choice("on_error", on_error, ON_ERROR)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgument(f"batch_size must be a positive int, not {batch_size!r}")
        names, types = self._output_names_and_types()
        # The media files stay pinned until the consumer is done: the rows are produced a batch ahead,
        # so the query's own rows end (and would close their lease) while the last batches are in use.
        lease = self._session.cache.lease() if any(t.is_media for t in types) else None
        stream = ahead(
            run.run_batches(self._session, self._spec, batch_size=batch_size, on_error=on_error, lease=lease)
        )
        fallible = self._fallible()
        try:
            for rows in stream:
                yield ResultSet(names, types, rows, fallible)
        finally:
            stream.close()  # stops the producer before its files are let go
            if lease is not None:
                lease.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Rows as dicts, streamed in batches (see :meth:`iter_batches`)."""
        for batch in self.iter_batches():
            yield from batch

    def to_pandas(self, *, media: str = "url", on_error: str = "abort") -> pd.DataFrame:
        """The result as a pandas DataFrame with real dtypes (see :meth:`ResultSet.to_pandas`)."""
        return self.collect(on_error=on_error).to_pandas(media=media)

    def to_arrow(self, *, media: str = "url", on_error: str = "abort") -> pa.Table:
        """The result as a `pyarrow.Table` (see :meth:`ResultSet.to_arrow`)."""
        return self.collect(on_error=on_error).to_arrow(media=media)

    def _output_names_and_types(self) -> tuple[list[str], list[ts.ColumnType]]:
        outputs = self._spec.outputs()
        return [name for name, _ in outputs], [expr.col_type for _, expr in outputs]

    def _fallible(self) -> list[bool]:
        """Which outputs may hold failed cells: all but inserted (not computed) stored columns."""
        return [not (isinstance(e, ColumnRef) and not e.column.is_computed) for _, e in self._spec.outputs()]

    def _check(self, value: Any) -> Expr:
        expr = as_expr(value)
        meta, join = self._spec.meta, self._spec.join
        for node in expr.walk():
            if not isinstance(node, ColumnRef):
                continue
            if join is not None:
                joins.on_right(meta, join, node)  # raises ExprError for a column of neither side
            elif node.column.name not in meta.columns or node.column.owner_id not in meta.owner_ids():
                raise ExprError(f"{node!r} is not a column of {meta.path!r}")
        return expr

    def join(self, other: Any, *, on: Any, how: str = "inner") -> Query:
        """Join another table (or an alias of one): rows of both where `on` holds.

        `how='left'` also keeps the rows of this side that match none (the other side's values are
        None). The database joins the rows, so `on` must run in SQL (stored columns compared);
        everything else works as in a query of one table: filters and sort keys in SQL or computed
        in Python, outputs over either side (functions over media fetch their files through the
        cache), group_by() and distinct(). To join a table with itself, name the other side with
        :meth:`~mediatable.table.Table.alias`.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> pets = mt.create_table('pets', {'id': mt.Int, 'name': mt.String})
            Created table 'pets'.
            >>> owners = mt.create_table('owners', {'pet_id': mt.Int, 'owner': mt.String})
            Created table 'owners'.
            >>> _ = pets.insert([{'id': 1, 'name': 'Rex'}, {'id': 2, 'name': 'Tom'}], quiet=True)
            >>> _ = owners.insert([{'pet_id': 1, 'owner': 'Ann'}], quiet=True)
            >>> joined = pets.join(owners, on=pets.id == owners.pet_id, how='left')
            >>> list(joined.select(pets.name, owners.owner).collect())
            [{'name': 'Rex', 'owner': 'Ann'}, {'name': 'Tom', 'owner': None}]
        """
        check_choice("how", how, joins.HOW)
        if self._spec.join is not None:
            raise InvalidArgument("a query joins two tables at most (for now)")
        alias = other._alias if isinstance(other, TableAlias) else None
        if alias is not None and alias in (self._spec.meta.name, self._spec.meta.path):
            raise InvalidArgument(f"the alias {alias!r} is the name of the left side: choose another")
        other_meta = other._fresh()
        joins.check_sides(self._spec.meta, other_meta, alias)
        joined = self._copy(join=joins.Join(other_meta, as_expr(on), how, alias))
        on_expr = joined._check(on)
        if on_expr.col_type != ts.Bool:
            raise ExprError(f"join(on=...) needs a boolean expression, got {on_expr!r}")
        return joined


def _unique(name: str, taken: set[str]) -> str:
    candidate, i = name, 1
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    taken.add(candidate)
    return candidate
