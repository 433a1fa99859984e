"""Queries: `t.where(...).select(...).order_by(...).limit(n).collect()` -> :class:`ResultSet`.

Filters and sort keys over stored scalar columns run in SQL; anything else (functions over media,
computed-on-the-fly expressions) runs through the same pipeline as computed columns.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import PIL.Image
import sqlalchemy as sa

from mediatable import types as ts
from mediatable.errors import ExprError, InvalidArgument
from mediatable.exec.pipeline import Pipeline, Target
from mediatable.exec.rows import TableSql
from mediatable.exprs.base import BoolOp, CellError, ColumnProperty, ColumnRef, Expr, as_expr
from mediatable.io.urls import is_url_like, redact_url

if TYPE_CHECKING:
    from mediatable.catalog.model import TableMeta
    from mediatable.session import Session


@dataclasses.dataclass(frozen=True)
class _OrderKey:
    expr: Expr
    asc: bool


class Query:
    """A lazy query over one table or view. Each method returns a new query.

    Examples:
        >>> # t.where(t.width > 600).select(t.label, w=t.width).order_by(t.label).limit(5).collect()
    """

    def __init__(
        self,
        session: Session,
        meta: TableMeta,
        select_list: Sequence[tuple[str, Expr]] | None = None,
        where: Expr | None = None,
        order: Sequence[_OrderKey] = (),
        limit_n: int | None = None,
    ) -> None:
        self._session = session
        self._meta = meta
        self._select = list(select_list) if select_list is not None else None
        self._where = where
        self._order = list(order)
        self._limit = limit_n

    def _copy(self, **changes: Any) -> Query:
        values = {
            "select_list": self._select,
            "where": self._where,
            "order": self._order,
            "limit_n": self._limit,
        }
        values.update(changes)
        return Query(self._session, self._meta, **values)

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
        return self._copy(select_list=items)

    def where(self, predicate: Any) -> Query:
        """Keep rows where `predicate` is True (combined with earlier filters by AND)."""
        predicate = self._check(predicate)
        if predicate.col_type != ts.Bool:
            raise ExprError(f"where() needs a boolean expression, got {predicate.col_type!r}: {predicate!r}")
        combined = predicate if self._where is None else BoolOp("and", [self._where, predicate])
        return self._copy(where=combined)

    def order_by(self, *exprs: Any, asc: bool = True) -> Query:
        """Sort by the given expressions (ascending unless `asc=False`); None values sort last."""
        keys = [_OrderKey(self._check(e), asc) for e in exprs]
        return self._copy(order=[*self._order, *keys])

    def limit(self, n: int) -> Query:
        """Return at most `n` rows."""
        if not isinstance(n, int) or n < 0:
            raise InvalidArgument(f"limit must be a non-negative int, not {n!r}")
        return self._copy(limit_n=n)

    def head(self, n: int = 10) -> ResultSet:
        """The first `n` rows."""
        return self.limit(n).collect()

    def count(self) -> int:
        """Number of rows matching the filter (counted by the database when the filter runs in SQL)."""
        sql = TableSql(self._meta)
        parts = [p.to_sql(sql.value_column) for p in _conjuncts(self._where)] if self._where is not None else []
        if all(p is not None for p in parts):
            query = sa.select(sa.func.count()).select_from(sql.from_clause())
            if parts:
                query = query.where(sa.and_(*parts))
            with self._session.engine.connect() as conn:
                total = int(conn.execute(query).scalar_one())
            return total if self._limit is None else min(total, self._limit)
        return len(self._copy(select_list=[], order=[])._rows())

    def to_pandas(self) -> pd.DataFrame:
        """Shortcut for `collect().to_pandas()`."""
        return self.collect().to_pandas()

    def collect(self) -> ResultSet:
        """Run the query.

        Returns:
            A :class:`ResultSet`. Image cells are PIL images opened lazily from the file cache;
            Video/Audio/Document cells are local file paths; cells that failed are None.
        """
        select = self._select if self._select is not None else self._default_select()
        with self._session.cache_lease() as lease:
            rows = self._rows(lease)
            targets = [
                Target(name=f"__out{i}", expr=_readable(expr), col_type=expr.col_type, save_media=False)
                for i, (_, expr) in enumerate(select)
            ]
            pipeline = Pipeline(lease, self._session.media_store, self._session.settings.compute_workers)
            pipeline.run(rows, targets)
            out_rows = []
            for row in rows:
                values = []
                for i, (_, expr) in enumerate(select):
                    value = row[f"__out{i}"]
                    if isinstance(value, CellError):
                        value = None
                    elif expr.col_type == ts.Image and isinstance(value, str):
                        value = _lazy_image(value)
                    values.append(value)
                out_rows.append(values)
        return ResultSet([name for name, _ in select], [expr.col_type for _, expr in select], out_rows)

    # -- internals ------------------------------------------------------------------------------
    def _check(self, value: Any) -> Expr:
        expr = as_expr(value)
        visible = self._meta.columns
        for node in expr.walk():
            if isinstance(node, ColumnRef) and (
                node.column.name not in visible or node.column.owner_id not in self._meta.owner_ids()
            ):
                raise ExprError(f"{node!r} is not a column of {self._meta.path!r}")
        return expr

    def _default_select(self) -> list[tuple[str, Expr]]:
        return [(name, ColumnRef(column)) for name, column in self._meta.columns.items()]

    def _rows(self, lease: Any = None) -> list[dict[str, Any]]:
        """Matching rows with every column any part of the query reads, filtered and ordered."""
        sql = TableSql(self._meta)
        needed_exprs: list[Expr] = [e for _, e in self._select or []]
        if self._select is None:
            needed_exprs += [e for _, e in self._default_select()]
        if self._where is not None:
            needed_exprs.append(self._where)
        needed_exprs += [k.expr for k in self._order]
        columns = _referenced_columns(needed_exprs, self._meta)

        sql_where, py_where = None, []
        if self._where is not None:
            parts = [p.to_sql(sql.value_column) for p in _conjuncts(self._where)]
            pushed = [p for p in parts if p is not None]
            py_where = [c for c, p in zip(_conjuncts(self._where), parts, strict=True) if p is None]
            if pushed:
                sql_where = sa.and_(*pushed)
        sql_order = [k.expr.to_sql(sql.value_column) for k in self._order]
        order_in_sql = all(o is not None for o in sql_order)
        order_clauses = []
        if order_in_sql:
            for key, clause in zip(self._order, sql_order, strict=True):
                order_clauses.append(clause.asc().nulls_last() if key.asc else clause.desc().nulls_last())
        limit_in_sql = self._limit if not py_where and order_in_sql else None

        with self._session.engine.connect() as conn:
            rows = list(sql.read(conn, columns, sql_where, order_clauses, limit_in_sql))
        if not py_where and order_in_sql:
            return rows

        if lease is None:
            with self._session.cache_lease() as own_lease:
                return self._filter_and_sort(rows, py_where, order_in_sql, own_lease)
        return self._filter_and_sort(rows, py_where, order_in_sql, lease)

    def _filter_and_sort(
        self, rows: list[dict[str, Any]], py_where: list[Expr], order_in_sql: bool, lease: Any
    ) -> list[dict[str, Any]]:
        pipeline = Pipeline(lease, self._session.media_store, self._session.settings.compute_workers)
        if py_where:
            predicate = py_where[0] if len(py_where) == 1 else BoolOp("and", py_where)
            pipeline.run(rows, [Target(name="__where", expr=predicate, col_type=ts.Bool, save_media=False)])
            rows = [r for r in rows if r["__where"] is True]
        if not order_in_sql:
            keys = [
                Target(name=f"__key{i}", expr=k.expr, col_type=k.expr.col_type, save_media=False)
                for i, k in enumerate(self._order)
            ]
            pipeline.run(rows, keys)
            for i in reversed(range(len(self._order))):
                name, asc = f"__key{i}", self._order[i].asc
                present = [r for r in rows if r[name] is not None and not isinstance(r[name], CellError)]
                missing = [r for r in rows if r[name] is None or isinstance(r[name], CellError)]
                present.sort(key=lambda r, n=name: r[n], reverse=not asc)
                rows = present + missing
        return rows[: self._limit] if self._limit is not None else rows


def _lazy_image(path: str) -> PIL.Image.Image | None:
    """Open an image for the user: decoded on first pixel access, holding no open file handle.

    The compressed bytes are read into memory (cheap from the page cache), so a result of
    millions of images never exhausts file descriptors and needs no close().
    """
    try:
        return PIL.Image.open(io.BytesIO(Path(path).read_bytes()))
    except (OSError, ValueError):
        return None  # not decodable: like any failed cell, the value is None


def _readable(expr: Expr) -> Expr:
    """A selected media column is read as its local file (fetched through the cache)."""
    if isinstance(expr, ColumnRef) and expr.col_type.is_media:
        return ColumnProperty(expr, "localpath")
    return expr


def _conjuncts(expr: Expr) -> list[Expr]:
    if isinstance(expr, BoolOp) and expr.op == "and":
        return [c for operand in expr.operands for c in _conjuncts(operand)]
    return [expr]


def _referenced_columns(exprs: Sequence[Expr], meta: TableMeta) -> list[Any]:
    names: list[str] = []
    for expr in exprs:
        for node in expr.walk():
            if isinstance(node, ColumnRef) and node.column.name not in names:
                names.append(node.column.name)
    visible = meta.columns
    return [visible[n] for n in names]


def _unique(name: str, taken: set[str]) -> str:
    candidate, i = name, 1
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    taken.add(candidate)
    return candidate


class ResultSet:
    """Rows returned by a query: iterate for dicts, index by position or column name.

    Examples:
        >>> rs = ResultSet(["a", "b"], [ts.Int, ts.String], [[1, "x"], [2, "y"]])
        >>> len(rs), rs[0], rs["a"]
        (2, {'a': 1, 'b': 'x'}, [1, 2])
    """

    def __init__(self, columns: list[str], col_types: list[ts.ColumnType], rows: list[list[Any]]) -> None:
        self.columns = columns
        self.col_types = col_types
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in self._rows:
            yield dict(zip(self.columns, row, strict=True))

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            if key not in self.columns:
                raise KeyError(f"no column {key!r} in result (columns: {', '.join(self.columns)})")
            index = self.columns.index(key)
            return [row[index] for row in self._rows]
        return dict(zip(self.columns, self._rows[key], strict=True))

    def to_pandas(self) -> pd.DataFrame:
        """The rows as a pandas DataFrame (one column per output)."""
        return pd.DataFrame(self._rows, columns=self.columns)

    def __repr__(self) -> str:
        shown = self._rows[:20]
        cells = [[_cell_text(v) for v in row] for row in shown]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True)).rstrip(),
            "  ".join("-" * w for w in widths),
        ]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
        if len(self._rows) > len(shown):
            lines.append(f"... ({len(self._rows)} rows in all)")
        return "\n".join(lines)


def _cell_text(value: Any) -> str:
    if isinstance(value, PIL.Image.Image):
        return f"<Image {value.width}x{value.height} {value.mode}>"
    if isinstance(value, str) and is_url_like(value):
        value = redact_url(value)  # a stored presigned URL's signature is a secret: never print it
    text = str(value) if value is not None else "None"
    return text if len(text) <= 48 else text[:47] + "…"
