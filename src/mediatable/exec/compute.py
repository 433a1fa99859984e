"""Computing columns: for rows about to be inserted, and for stored rows (fill, recompute).

These functions take a :class:`~mediatable.session.Session` and a table's
:class:`~mediatable.catalog.model.TableMeta`; the user-facing handles in :mod:`mediatable.table` call them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mediatable.catalog.model import Column, TableMeta
from mediatable.exec.pipeline import Pipeline, Target, preflight
from mediatable.exec.rows import TableSql
from mediatable.exec.status import UpdateStatus, progress_bar
from mediatable.exprs import CellError, ColumnRef
from mediatable.session import Session


def computed_columns(meta: TableMeta) -> list[Column]:
    """The table's own computed columns in the order they were added (each may read the earlier ones)."""
    return sorted((c for c in meta.own_columns.values() if c.is_computed), key=lambda c: c.position)


def targets(meta: TableMeta, columns: Sequence[Column], on_error: str | None = None) -> list[Target]:
    """Pipeline targets for computed `columns`; `on_error` overrides each column's own setting."""
    return [
        Target(
            name=c.name,
            expr=c.computed.get(),
            col_type=c.col_type,
            table_id=meta.id,
            on_error=on_error or c.on_error or "ignore",
            table_path=meta.path,
            destination=c.destination,
        )
        for c in columns
    ]


def compute(
    session: Session,
    meta: TableMeta,
    lease: Any,
    rows: list[dict[str, Any]],
    columns: Sequence[Column],
    on_error: str | None,
    progress: Any = None,
) -> None:
    """Compute `columns` for `rows` in place (values or CellErrors)."""
    if not columns or not rows:
        return
    pipeline = Pipeline(
        lease,
        session.media_store,
        session.settings.compute_workers,
        progress,
        presigner=session.presigner,
        uploads=session.uploads,
    )
    pipeline.run(rows, targets(meta, columns, on_error))


def fill(
    session: Session,
    meta: TableMeta,
    columns: Sequence[Column],
    *,
    on_error: str | None,
    desc: str,
    rowids: Iterable[int] | None = None,
    errors_only: bool = False,
) -> UpdateStatus:
    """Compute `columns` for stored rows and write them back.

    Rows: all, or those in `rowids`; with `errors_only`, only those where one of `columns` holds an error.
    """
    sql = TableSql(meta)
    inputs = referenced(columns, meta)
    with session.engine.connect() as conn:
        rows = list(sql.read(conn, inputs + list(columns), rowids=rowids))
    if errors_only:
        rows = [r for r in rows if any(isinstance(r.get(c.name), CellError) for c in columns)]
    preflight(rows, [(c.name, c.computed.get()) for c in columns])
    bar = progress_bar(session.settings, desc, total=len(rows))
    try:
        with session.cache_lease() as lease:
            compute(session, meta, lease, rows, columns, on_error, progress=bar.update)
    finally:
        bar.close()
    with session.engine.begin() as conn:
        sql.update(conn, rows, columns)
    return count(UpdateStatus(operation="updated"), rows, columns, meta.path)


def referenced(columns: Sequence[Column], meta: TableMeta) -> list[Column]:
    """The columns that computing `columns` reads (other than `columns` themselves)."""
    names: list[str] = []
    for column in columns:
        for node in column.computed.get().walk():
            if isinstance(node, ColumnRef) and node.column.name not in names:
                names.append(node.column.name)
    own = {c.name for c in columns}
    return [meta.columns[n] for n in names if n not in own]


def dependents_of(meta: TableMeta, names: set[str], include: bool) -> list[Column]:
    """Computed columns reading any of `names`, directly or through each other, in order.

    With `include`, the computed columns named in `names` are part of the result too.
    """
    affected = set(names)
    out = []
    for column in computed_columns(meta):
        refs = {n.column.name for n in column.computed.get().walk() if isinstance(n, ColumnRef)}
        if column.name in names and include:
            out.append(column)
        elif refs & affected:
            affected.add(column.name)
            out.append(column)
    return out


def count(
    status: UpdateStatus,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    path: str,
) -> UpdateStatus:
    """`status` plus the cells of `columns` over `rows` (and their errors)."""
    computed = 0
    errors = 0
    bad: set[str] = set(status.cols_with_excs)
    for row in rows:
        for column in columns:
            computed += 1
            if isinstance(row.get(column.name), CellError):
                errors += 1
                bad.add(f"{path}.{column.name}")
    return UpdateStatus(
        num_rows=max(status.num_rows, len(rows)),
        num_computed_values=status.num_computed_values + computed,
        num_excs=status.num_excs + errors,
        cols_with_excs=sorted(bad),
        operation=status.operation,
    )
