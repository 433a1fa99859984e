"""Changing stored rows inside one change: new values (constants or expressions), then every computed
column that depends on them, written together at the change's version.

Everything is computed before anything is written, and written on the change's connection: an
update, with its dependents, commits whole or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mediatable.catalog.change import Change
from mediatable.catalog.model import Column, TableMeta
from mediatable.errors import ComputeError, DataError
from mediatable.exec import compute, views
from mediatable.exec.pipeline import Pipeline, Target, preflight
from mediatable.exec.rows import BASE_ROWID, ROWID, TableSql
from mediatable.exec.status import UpdateStatus
from mediatable.exprs import CellError, ColumnRef, Expr
from mediatable.session import Session


def check_settable(meta: TableMeta, names: Sequence[str]) -> list[Column]:
    """The own, non-computed columns called `names`. Raises DataError naming the first that is not."""
    out = []
    for name in names:
        column = meta.own_columns.get(name)
        if column is None:
            raise DataError(f"unknown column {name!r} in update of {meta.path!r}", column=name)
        if column.is_computed:
            raise DataError(f"column {name!r} is computed; use recompute_columns()", column=name)
        out.append(column)
    return out


def evaluate(
    session: Session, meta: TableMeta, lease: Any, rows: list[dict[str, Any]], exprs: Mapping[str, Expr]
) -> None:
    """Set `row[name]` to each expression's value for each row (read before any is assigned).

    Raises:
        ComputeError: an expression fails for a row (names the row and the column); nothing is written.
    """
    if not exprs:
        return
    targets = [
        Target(name=f"__new_{name}", expr=expr, col_type=meta.own_columns[name].col_type, table_id=meta.id)
        for name, expr in exprs.items()
    ]
    preflight(rows, list(exprs.items()))
    pipeline = Pipeline(lease, session.media_store, session.settings.compute_workers, presigner=session.presigner)
    pipeline.run(rows, targets)
    for row in rows:
        for name in exprs:
            value = row.pop(f"__new_{name}")
            if isinstance(value, CellError):
                raise ComputeError(
                    f"update of {meta.path}.{name} failed at row {row[ROWID]}: {value.errortype}: {value.errormsg}",
                    table=meta.path,
                    column=name,
                    row=row[ROWID],
                ) from value.exc
            row[name] = value


def expression_inputs(meta: TableMeta, exprs: Mapping[str, Expr]) -> list[Column]:
    """The stored columns that evaluating `exprs` reads."""
    names: list[str] = []
    for expr in exprs.values():
        for node in expr.walk():
            if isinstance(node, ColumnRef) and node.column.name not in names:
                names.append(node.column.name)
    return [meta.columns[n] for n in names]


def apply(
    session: Session,
    change: Change,
    lease: Any,
    rows: list[dict[str, Any]],
    names: Sequence[str],
) -> UpdateStatus:
    """Write columns `names` of `rows` (dicts with `_rowid` and the new values) and recompute dependents.

    Runs on `change`'s connection and version. Returns the status (rows updated, values computed).
    """
    meta = change.meta
    changed = [meta.own_columns[n] for n in names]
    status = UpdateStatus(num_rows=len(rows), num_computed_values=len(rows) * len(changed), operation="updated")
    if not rows:
        return status
    dependents = compute.dependents_of(meta, set(names), include=False)
    if dependents:
        inputs = [c for c in compute.referenced(dependents, meta) if c.name not in names]
        if inputs:
            stored: dict[int, dict[str, Any]] = {}
            for start in range(0, len(rows), 1000):
                chunk = [row[ROWID] for row in rows[start : start + 1000]]
                stored.update((r[ROWID], r) for r in TableSql(meta).read(change.conn, inputs, rowids=chunk))
            for row in rows:
                row.update({c.name: stored[row[ROWID]][c.name] for c in inputs})
        compute.compute(session, meta, lease, rows, dependents, on_error=None)
        status = compute.count(status, rows, dependents, meta.path)
    TableSql(meta).update(change.conn, rows, [*changed, *dependents], change.version)
    touched = set(names) | {c.name for c in dependents}
    for view in session.catalog.views(meta, change.conn):
        status = status + _update_view(session, change, lease, view, [row[ROWID] for row in rows], touched)
    status.num_rows = len(rows)
    return status


def _update_view(
    session: Session, change: Change, lease: Any, view: TableMeta, base_rowids: list[int], touched: set[str]
) -> UpdateStatus:
    """Bring a view's rows of updated base rows up to date, in the same change.

    A changed iterator source makes the rows anew (its old rows retire); otherwise the view's own computed
    columns that read a changed base column are computed again.
    """
    status = UpdateStatus(operation="updated")
    sql = TableSql(view)
    if (view.iterator or {}).get("source") in touched:
        sql.delete(change.conn, base_rowids, change.version, by_base=True)
        base = TableSql(change.meta)
        for start in range(0, len(base_rowids), 1000):
            chunk = base_rowids[start : start + 1000]
            base_rows = list(base.read(change.conn, list(change.meta.columns.values()), rowids=chunk))
            status = status + views.propagate(
                session, view, lease, base_rows, None, conn=change.conn, version=change.version
            )
        return status
    dependents = compute.dependents_of(view, touched, include=False)
    if not dependents:
        return status
    inputs = [c for c in compute.referenced(dependents, view)]
    for start in range(0, len(base_rowids), 1000):
        where = sql.table.c[BASE_ROWID].in_(base_rowids[start : start + 1000])
        view_rows = list(sql.read(change.conn, inputs, where=where))
        compute.compute(session, view, lease, view_rows, dependents, on_error=None)
        sql.update(change.conn, view_rows, dependents, change.version)
        status = compute.count(status, view_rows, dependents, view.path)
    return status
