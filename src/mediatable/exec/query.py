"""Running queries: filters and sort keys over stored scalar columns run in SQL; anything else
(functions over media, computed-on-the-fly expressions) runs through the same pipeline as computed columns.

A :class:`QuerySpec` says what to compute; the user-facing :class:`~mediatable.table.query.Query`
builds one and calls :func:`collect`, :func:`count` or :func:`matching_rows`.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import PIL.Image
import sqlalchemy as sa

from mediatable import types as ts
from mediatable.catalog.model import Column, TableMeta
from mediatable.exec.pipeline import Pipeline, Target
from mediatable.exec.rows import TableSql
from mediatable.exprs import BoolOp, CellError, ColumnProperty, ColumnRef, Expr
from mediatable.session import Session


@dataclasses.dataclass(frozen=True)
class OrderKey:
    """One sort key of a query."""

    expr: Expr
    asc: bool


@dataclasses.dataclass(frozen=True)
class QuerySpec:
    """What a query computes: outputs (None: every column), filter, sort keys and row limit."""

    meta: TableMeta
    select: tuple[tuple[str, Expr], ...] | None = None
    where: Expr | None = None
    order: tuple[OrderKey, ...] = ()
    limit: int | None = None

    def outputs(self) -> list[tuple[str, Expr]]:
        """The output (name, expression) pairs: the select list, or every column."""
        if self.select is not None:
            return list(self.select)
        return [(name, ColumnRef(column)) for name, column in self.meta.columns.items()]


def count(session: Session, spec: QuerySpec) -> int:
    """Number of rows matching the filter (counted by the database when the filter runs in SQL)."""
    sql = TableSql(spec.meta)
    parts = [p.to_sql(sql.value_column) for p in conjuncts(spec.where)] if spec.where is not None else []
    if all(p is not None for p in parts):
        query = sa.select(sa.func.count()).select_from(sql.from_clause())
        if parts:
            query = query.where(sa.and_(*parts))
        with session.engine.connect() as conn:
            total = int(conn.execute(query).scalar_one())
        return total if spec.limit is None else min(total, spec.limit)
    return len(matching_rows(session, dataclasses.replace(spec, select=(), order=())))


def collect(session: Session, spec: QuerySpec) -> tuple[list[str], list[ts.ColumnType], list[list[Any]]]:
    """Run the query: output names, output types and one list of values per row.

    Image cells are PIL images opened lazily from the file cache; Video/Audio/Document cells are
    local file paths; cells that failed are None.
    """
    select = spec.outputs()
    with session.cache_lease() as lease:
        rows = matching_rows(session, spec, lease)
        targets = [
            Target(name=f"__out{i}", expr=_readable(expr), col_type=expr.col_type, save_media=False)
            for i, (_, expr) in enumerate(select)
        ]
        pipeline = Pipeline(lease, session.media_store, session.settings.compute_workers)
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
    return [name for name, _ in select], [expr.col_type for _, expr in select], out_rows


def matching_rows(session: Session, spec: QuerySpec, lease: Any = None) -> list[dict[str, Any]]:
    """Matching rows with every column any part of the query reads, filtered and ordered."""
    sql = TableSql(spec.meta)
    needed_exprs: list[Expr] = [e for _, e in spec.outputs()]
    if spec.where is not None:
        needed_exprs.append(spec.where)
    needed_exprs += [k.expr for k in spec.order]
    columns = referenced_columns(needed_exprs, spec.meta)

    sql_where, py_where = None, []
    if spec.where is not None:
        parts = [p.to_sql(sql.value_column) for p in conjuncts(spec.where)]
        pushed = [p for p in parts if p is not None]
        py_where = [c for c, p in zip(conjuncts(spec.where), parts, strict=True) if p is None]
        if pushed:
            sql_where = sa.and_(*pushed)
    sql_order = [k.expr.to_sql(sql.value_column) for k in spec.order]
    order_in_sql = all(o is not None for o in sql_order)
    order_clauses = []
    if order_in_sql:
        for key, clause in zip(spec.order, sql_order, strict=True):
            order_clauses.append(clause.asc().nulls_last() if key.asc else clause.desc().nulls_last())
    limit_in_sql = spec.limit if not py_where and order_in_sql else None

    with session.engine.connect() as conn:
        rows = list(sql.read(conn, columns, sql_where, order_clauses, limit_in_sql))
    if not py_where and order_in_sql:
        return rows

    if lease is None:
        with session.cache_lease() as own_lease:
            return _filter_and_sort(session, spec, rows, py_where, order_in_sql, own_lease)
    return _filter_and_sort(session, spec, rows, py_where, order_in_sql, lease)


def _filter_and_sort(
    session: Session,
    spec: QuerySpec,
    rows: list[dict[str, Any]],
    py_where: list[Expr],
    order_in_sql: bool,
    lease: Any,
) -> list[dict[str, Any]]:
    pipeline = Pipeline(lease, session.media_store, session.settings.compute_workers)
    if py_where:
        predicate = py_where[0] if len(py_where) == 1 else BoolOp("and", py_where)
        pipeline.run(rows, [Target(name="__where", expr=predicate, col_type=ts.Bool, save_media=False)])
        rows = [r for r in rows if r["__where"] is True]
    if not order_in_sql:
        keys = [
            Target(name=f"__key{i}", expr=k.expr, col_type=k.expr.col_type, save_media=False)
            for i, k in enumerate(spec.order)
        ]
        pipeline.run(rows, keys)
        for i in reversed(range(len(spec.order))):
            name, asc = f"__key{i}", spec.order[i].asc
            present = [r for r in rows if r[name] is not None and not isinstance(r[name], CellError)]
            missing = [r for r in rows if r[name] is None or isinstance(r[name], CellError)]
            present.sort(key=lambda r, n=name: r[n], reverse=not asc)
            rows = present + missing
    return rows[: spec.limit] if spec.limit is not None else rows


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


def conjuncts(expr: Expr | None) -> list[Expr]:
    """The parts of an AND chain (`a & b & c` -> [a, b, c])."""
    if expr is None:
        return []
    if isinstance(expr, BoolOp) and expr.op == "and":
        return [c for operand in expr.operands for c in conjuncts(operand)]
    return [expr]


def referenced_columns(exprs: Sequence[Expr], meta: TableMeta) -> list[Column]:
    """The catalog columns that `exprs` read, in first-use order."""
    names: list[str] = []
    for expr in exprs:
        for node in expr.walk():
            if isinstance(node, ColumnRef) and node.column.name not in names:
                names.append(node.column.name)
    visible = meta.columns
    return [visible[n] for n in names]
