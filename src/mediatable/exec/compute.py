"""Computing columns: for rows about to be inserted, and for stored rows (fill, recompute).

These functions take a :class:`~mediatable.session.Session` and a table's
:class:`~mediatable.catalog.model.TableMeta`; the user-facing handles in :mod:`mediatable.table` call them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import sqlalchemy as sa

from mediatable.catalog import versions
from mediatable.catalog.catalog import read_only
from mediatable.catalog.model import Column, TableMeta
from mediatable.exec import embedding_index
from mediatable.exec.pipeline import Pipeline, Target, preflight
from mediatable.exec.rows import ROWID, TableSql
from mediatable.exec.status import UpdateStatus, progress_bar
from mediatable.exec.workers import worker_processes
from mediatable.exprs import CellError, ColumnRef
from mediatable.io.media_store import ImageEncoding
from mediatable.session import Session


def computed_columns(meta: TableMeta) -> list[Column]:
    """The table's own computed columns in the order they were added (each may read the earlier ones)."""
    return sorted((c for c in meta.own_columns.values() if c.is_computed), key=lambda c: c.position)


def targets(
    meta: TableMeta, columns: Sequence[Column], on_error: str | None = None, encoding: ImageEncoding | None = None
) -> list[Target]:
    """Pipeline targets for computed `columns`; `on_error` overrides each column's own setting.

    Generated images are encoded as each column asks, else with `encoding` (None: the media store's default).
    """
    return [
        Target(
            name=c.name,
            expr=c.computed.get(),
            col_type=c.col_type,
            table_id=meta.id,
            on_error=on_error or c.on_error or "ignore",
            table_path=meta.path,
            destination=c.destination,
            encoding=(encoding or ImageEncoding()).with_options(**c.image_options) if c.image_options else encoding,
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
        processes=worker_processes(session),
    )
    pipeline.run(rows, targets(meta, columns, on_error, session.media_store.encoding))


class Executor(Protocol):
    """Where computed values are evaluated: :class:`LocalExecutor` here, or a cluster (`exec.executors`)."""

    def fill(
        self,
        session: Session,
        meta: TableMeta,
        rows: list[dict[str, Any]],
        columns: Sequence[Column],
        on_error: str | None,
        desc: str,
    ) -> contextlib.AbstractContextManager[None]:
        """Compute `columns` for stored `rows` (dicts with `_rowid`) in place on entering; the caller
        stores them inside the block. Rows deleted meanwhile may be removed from `rows`."""
        ...

    def compute(
        self,
        session: Session,
        meta: TableMeta,
        lease: Any,
        rows: list[dict[str, Any]],
        columns: Sequence[Column],
        on_error: str | None,
    ) -> None:
        """Compute `columns` for rows about to be inserted, in place (values or CellErrors)."""
        ...


class LocalExecutor:
    """Computes in this process, on the pipeline's threads and worker processes (the default executor)."""

    @contextlib.contextmanager
    def fill(
        self,
        session: Session,
        meta: TableMeta,
        rows: list[dict[str, Any]],
        columns: Sequence[Column],
        on_error: str | None,
        desc: str,
    ) -> Iterator[None]:
        compute_with_bar(session, meta, rows, columns, on_error, desc)
        yield

    def compute(
        self,
        session: Session,
        meta: TableMeta,
        lease: Any,
        rows: list[dict[str, Any]],
        columns: Sequence[Column],
        on_error: str | None,
    ) -> None:
        compute(session, meta, lease, rows, columns, on_error)


LOCAL = LocalExecutor()


def fill(
    session: Session,
    meta: TableMeta,
    columns: Sequence[Column],
    *,
    on_error: str | None,
    desc: str,
    rowids: Iterable[int] | None = None,
    errors_only: bool = False,
    executor: Executor = LOCAL,
) -> UpdateStatus:
    """Compute `columns` again for stored rows (on `executor`) and write them back, as one new version.

    Rows: all, or those in `rowids`; with `errors_only`, only those where one of `columns` holds an error.
    Values are computed before the change starts; if another process changes the schema meanwhile,
    nothing is written (:class:`~mediatable.errors.ConcurrentChange`).
    """
    rows = read_inputs(session, meta, columns, rowids)
    if errors_only:
        rows = [r for r in rows if any(isinstance(r.get(c.name), CellError) for c in columns)]
    status = count(UpdateStatus(operation="updated"), [], columns, meta.path)
    if not rows:
        return status
    summary = f"recomputed {', '.join(c.name for c in columns)}"
    with (
        executor.fill(session, meta, rows, columns, on_error, desc),
        session.catalog.change(
            meta, "recompute", summary=summary, expect_schema_version=meta.family_schema_version
        ) as change,
    ):
        TableSql(change.meta).update(change.conn, rows, columns, change.version)
        versions.note_rows(change.conn, meta.root_id, change.version, updated=len(rows))
    embedding_index.after_change(session, meta)
    return count(status, rows, columns, meta.path)


def add_computed(
    session: Session, meta: TableMeta, column: Column, if_exists: str, desc: str, executor: Executor = LOCAL
) -> tuple[TableMeta, UpdateStatus]:
    """Add computed `column` to `meta` and fill it for every row (on `executor`), as one new version.

    The values are computed first, then the column and its values are stored in one transaction
    (with rows inserted meanwhile computed there too): an abort, a crash or a kill leaves the table
    exactly as it was, and a column is never stored without its values. `if_exists='replace'`
    retires the old column in that same transaction. Returns the new description and the status.

    Raises:
        ConcurrentChange: another process changed the family's schema while the values were computed.
        ComputeError: `on_error='abort'` and a value failed.
    """
    rows = read_inputs(session, meta, [column])
    summary = f"added computed column {column.name}"
    with (
        executor.fill(session, meta, rows, [column], None, desc),
        session.catalog.change(
            meta, "add_column", summary=summary, schema_change=True, expect_schema_version=meta.family_schema_version
        ) as change,
    ):
        stored = change.add_column(column, if_exists=if_exists)
        done = {row[ROWID] for row in rows}
        sql = TableSql(change.meta)
        present = [r[0] for r in change.conn.execute(sa.select(sql.table.c[ROWID]))]
        late = [rowid for rowid in present if rowid not in done]
        if late:  # inserted by others while the values were computed: they hold the lock no more
            late_rows = list(sql.read(change.conn, referenced([column], meta), rowids=late))
            with session.cache_lease() as lease:
                compute(session, meta, lease, late_rows, [column], None)
            rows += late_rows
        sql.update(change.conn, rows, [stored], None)
        return change.meta, count(UpdateStatus(operation="updated"), rows, [column], meta.path)


def read_inputs(
    session: Session, meta: TableMeta, columns: Sequence[Column], rowids: Iterable[int] | None = None
) -> list[dict[str, Any]]:
    """Stored rows with what computing `columns` reads (and the columns' own values, where stored)."""
    stored = [c for c in columns if c.name in meta.columns and meta.columns[c.name] is c]
    with read_only(session.engine) as conn:
        return list(TableSql(meta).read(conn, referenced(columns, meta) + stored, rowids=rowids))


def compute_with_bar(
    session: Session,
    meta: TableMeta,
    rows: list[dict[str, Any]],
    columns: Sequence[Column],
    on_error: str | None,
    desc: str,
) -> None:
    """:func:`compute` with a progress bar over the rows (after the columns' preflight checks)."""
    preflight(rows, [(c.name, c.computed.get()) for c in columns])
    bar = progress_bar(session.settings, desc, total=len(rows))
    try:
        with session.cache_lease() as lease:
            compute(session, meta, lease, rows, columns, on_error, progress=bar.update)
    finally:
        bar.close()


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
    """`status` plus the cells of `columns` over `rows` (and their errors, which only computed columns hold:
    inserted values are checked before they are stored)."""
    errors = 0
    bad: set[str] = set(status.cols_with_excs)
    for column in columns:
        if not column.is_computed:
            continue
        failed = sum(isinstance(row.get(column.name), CellError) for row in rows)
        if failed:
            errors += failed
            bad.add(f"{path}.{column.name}")
    return UpdateStatus(
        num_rows=max(status.num_rows, len(rows)),
        num_computed_values=status.num_computed_values + len(rows) * len(columns),
        num_excs=status.num_excs + errors,
        cols_with_excs=sorted(bad),
        operation=status.operation,
    )
