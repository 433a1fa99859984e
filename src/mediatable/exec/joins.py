"""Joins of two tables: `t1.join(t2, on=t1.id == t2.id, how='inner'|'left')`, run as one SQL query.

The join condition, filters, sort keys and outputs must all run in SQL (stored columns, the
operators and functions that push down); media columns come back as their stored URLs. A join
needing Python evaluation is refused with a clear error rather than run slowly or differently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from mediatable.catalog.catalog import read_only
from mediatable.catalog.model import Column, TableMeta
from mediatable.errors import ExprError, InvalidArgument
from mediatable.exec.rows import TableSql
from mediatable.exprs import ColumnRef, Expr
from mediatable.session import Session

HOW = ("inner", "left")


@dataclasses.dataclass(frozen=True)
class Join:
    """The right side of a join: its table, the condition and the kind."""

    meta: TableMeta
    on: Expr
    how: str


def check_sides(left: TableMeta, right: TableMeta) -> None:
    """Refuse joins whose sides share tables (a self-join would need aliases)."""
    if left.owner_ids() & right.owner_ids():
        raise InvalidArgument(f"cannot join {left.path!r} with {right.path!r}: they share a table (self-joins)")


def default_outputs(left: TableMeta, right: TableMeta) -> list[tuple[str, Expr]]:
    """Every column of both sides; a right-side name taken by the left is prefixed with its table's name."""
    out: list[tuple[str, Expr]] = [(n, ColumnRef(c)) for n, c in left.columns.items()]
    for name, column in right.columns.items():
        out.append((name if name not in left.columns else f"{right.name}_{name}", ColumnRef(column)))
    return out


def _resolver(left: TableSql, right: TableSql) -> Callable[[Column], Any]:
    right_ids = right.meta.owner_ids()
    return lambda column: (right if column.owner_id in right_ids else left).value_column(column)


def _sql(expr: Expr, resolve: Callable[[Column], Any], what: str) -> Any:
    clause = expr.sql_value(resolve) if isinstance(expr, ColumnRef) else expr.to_sql(resolve)
    if clause is None:
        raise ExprError(f"{what} {expr!r} cannot run in SQL, and joins run only in SQL")
    return clause


def select(spec: Any) -> tuple[sa.Select[Any], list[Any]]:
    """The join as one SELECT, and the output types."""
    join: Join = spec.join
    left, right = TableSql(spec.meta), TableSql(join.meta)
    resolve = _resolver(left, right)
    outputs = spec.outputs()
    columns = [_sql(e, resolve, f"output {name!r} =").label(f"o{i}") for i, (name, e) in enumerate(outputs)]
    source = left.from_clause().join(
        right.from_clause(), _sql(join.on, resolve, "the join condition"), isouter=join.how == "left"
    )
    query = sa.select(*columns).select_from(source)
    if spec.where is not None:
        query = query.where(_sql(spec.where, resolve, "the filter"))
    order = []
    for key in spec.order:
        clause = _sql(key.expr, resolve, "the sort key")
        order.append(clause.asc().nulls_last() if key.asc else clause.desc().nulls_last())
    query = query.order_by(*order, left.table.c["_rowid"], right.table.c["_rowid"])
    if spec.limit is not None:
        query = query.limit(spec.limit)
    return query, [e.col_type for _, e in outputs]


def run(session: Session, spec: Any) -> list[list[Any]]:
    """The joined rows (values as users see them; media as stored URLs)."""
    query, types = select(spec)
    with read_only(session.engine) as conn:
        found = conn.execute(query).all()
    return [[v if t.is_media else t.from_sql(v) for t, v in zip(types, row, strict=True)] for row in found]
