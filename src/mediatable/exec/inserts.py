"""Inserting rows: validate, compute against the catalog's current schema, store with the views' rows.

One insert call is one change (one transaction, one version): the base table's rows, the rows its
views derive from them, and (with `on_conflict='update'`) the rows it updates commit together or
not at all. Values are computed against the schema the catalog holds when the change takes the
family's lock — whatever handle (or process) started the insert — so a computed column added by
another handle or process is never left empty.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mediatable.catalog import versions
from mediatable.catalog.change import Change
from mediatable.catalog.model import TableMeta
from mediatable.errors import DataError
from mediatable.exec import compute, embedding_index, keys, updates, validation, views
from mediatable.exec.rows import ROWID, TableSql
from mediatable.exec.status import UpdateStatus
from mediatable.importers import none_if_missing
from mediatable.session import Session


def validate_columns(meta: TableMeta, records: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]] | None:
    """The batch's values checked and converted a column at a time (column name -> values), or None.

    The fast path, for dicts that all have the same keys: each column's values are checked in one
    go (:meth:`ColumnType.validate_many`). None when the batch needs checking row by row (another
    kind of record, rows with different keys, a value that does not fit): that path finds the
    first error and words it.
    """
    if not records or set(map(type, records)) != {dict}:
        return None
    names = list(records[0])
    if set(map(len, records)) != {len(names)}:
        return None  # some row lacks a column another row has (or has one more)
    out: dict[str, list[Any]] = {}
    for name in names:
        column = meta.own_columns.get(name)
        if column is None or column.is_computed:
            return None
        try:
            values = list(map(operator.itemgetter(name), records))
        except KeyError:
            return None  # as many keys as the first row, but another one
        checked = column.col_type.validate_many(values)
        if checked is None:
            try:
                checked = [column.col_type.validate(none_if_missing(v)) for v in values]
            except DataError:
                return None
        out[name] = checked
    return out


def _as_rows(values: Mapping[str, list[Any]], count: int) -> list[dict[str, Any]]:
    names = list(values)
    return (
        [dict(zip(names, row, strict=True)) for row in zip(*values.values(), strict=True)]
        if names
        else [{} for _ in range(count)]
    )


def validate_rows(meta: TableMeta, records: Sequence[Mapping[str, Any]], first_index: int = 0) -> list[dict[str, Any]]:
    """Rows of checked and converted values. Raises DataError naming the row, the column and the value."""
    columns = meta.own_columns
    out: list[dict[str, Any]] = []
    for index, record in enumerate(records, start=first_index):
        if not isinstance(record, Mapping):
            raise DataError(f"row {index}: expected a dict of column values, got {type(record).__name__}", row=index)
        row: dict[str, Any] = {}
        for name, value in record.items():
            column = columns.get(name)
            if column is None:
                raise DataError(
                    f"row {index}: unknown column {name!r} (columns of {meta.path!r}: "
                    f"{', '.join(c for c, col in columns.items() if not col.is_computed)})",
                    row=index,
                    column=name,
                )
            if column.is_computed:
                raise DataError(f"row {index}: column {name!r} is computed and cannot be set", row=index, column=name)
            try:
                row[name] = column.col_type.validate(none_if_missing(value))
            except DataError as exc:
                raise type(exc)(f"row {index}, column {name!r}: {exc}", row=index, column=name) from exc
        out.append(row)
    return out


class _Batch:
    """One batch of input records, validated and computed against one description of the table.

    Values are kept a column at a time when they could be checked that way (`values`); `rows`, the
    dicts that computing, keys and views work on, are made from them only when something asks.
    """

    def __init__(self, session: Session, meta: TableMeta, records: Sequence[Mapping[str, Any]], first: int) -> None:
        self.records, self.first = records, first
        self.prepare(session, meta)

    def prepare(self, session: Session, meta: TableMeta) -> None:
        self.meta = meta
        self.values = validate_columns(meta, self.records)
        self._rows = None if self.values is not None else validate_rows(meta, self.records, self.first)
        self.failures: dict[int, list[str]] = {}
        if meta.media_validation == "on_write":
            self.failures = validation.unreachable(session, meta, self.rows, self.first)

    @property
    def rows(self) -> list[dict[str, Any]]:
        if self._rows is None:
            self._rows = _as_rows(self.values or {}, len(self.records))
        return self._rows

    def compute(self, session: Session, lease: Any, on_error: str | None, executor: compute.Executor) -> None:
        if self.failures and on_error == "abort":
            raise DataError(f"media cannot be read: {next(iter(self.failures.values()))[0]}")
        if self.failures:
            self._rows = [r for i, r in enumerate(self.rows, start=self.first) if i not in self.failures]
            self.values = None  # the columns no longer line up with the rows
        computed = compute.computed_columns(self.meta)
        if computed:
            executor.compute(session, self.meta, lease, self.rows, computed, on_error)

    def columnar(self, on_conflict: str, views: Sequence[TableMeta]) -> bool:
        """Whether the batch can be stored straight from its columns: nothing needs its rows as dicts."""
        plain = self.values is not None and not self.meta.primary_key and on_conflict == "error" and not views
        return plain and not compute.computed_columns(self.meta)


def insert(
    session: Session,
    meta: TableMeta,
    batches: Iterable[Sequence[Mapping[str, Any]]],
    *,
    on_error: str | None,
    on_conflict: str,
    progress: Any,
    executor: compute.Executor = compute.LOCAL,
) -> UpdateStatus:
    """Insert every batch of input records into `meta`'s table as one change; returns the status.

    The table's computed columns are computed on `executor`; views' rows and columns here.
    """
    status = UpdateStatus(operation="inserted")
    errors: list[str] = []
    seen = inserted = updated = 0
    with session.cache_lease() as lease, contextlib.ExitStack() as stack:
        change: Change | None = None
        sql: TableSql | None = None
        view_metas: list[TableMeta] = []
        for records in batches:
            batch = _Batch(session, meta, records, seen)
            batch.compute(session, lease, on_error, executor)
            if change is None:  # opened once the first batch is computed: a short insert locks briefly
                change = stack.enter_context(session.catalog.change(meta, "insert"))
                if change.meta.family_schema_version != meta.family_schema_version:  # changed meanwhile: compute anew
                    meta = change.meta
                    batch.prepare(session, meta)
                    batch.compute(session, lease, on_error, executor)
                view_metas = session.catalog.views(meta, change.conn)
            own = list(meta.own_columns.values())
            if sql is None or sql.meta is not meta:
                sql = TableSql(meta)
            if batch.columnar(on_conflict, view_metas):
                sql.insert_columns(change.conn, batch.values or {}, len(records), own, change.version)
                status = status + UpdateStatus(num_computed_values=len(records) * len(own), operation="inserted")
                inserted += len(records)
            else:
                to_insert, to_update, _ = keys.split(change.conn, meta, batch.rows, on_conflict, seen)
                rowids = sql.insert(change.conn, to_insert, own, change.version)
                for row, rowid in zip(to_insert, rowids, strict=True):
                    row[ROWID] = rowid
                status = compute.count(status, to_insert, own, meta.path)
                for view in view_metas:
                    status = status + views.propagate(
                        session, view, lease, to_insert, on_error, conn=change.conn, version=change.version
                    )
                if to_update:
                    status = status + _update_existing(session, change, lease, to_update)
                for messages in batch.failures.values():
                    errors.extend(messages)
                inserted += len(to_insert)
                updated += len(to_update)
            seen += len(records)
            progress(len(records))
        if change is not None:
            versions.note_rows(change.conn, meta.root_id, change.version, inserted=inserted, updated=updated)
    if inserted or updated:
        embedding_index.after_change(session, meta)  # the new rows' vectors, once the rows are committed
    status.num_rows = inserted
    status.num_updated = updated
    if errors:
        status.num_excs += len(errors)
        status.errors = errors
        status.cols_with_excs = sorted({*status.cols_with_excs, f"{meta.path} (media validation)"})
    return status


def _update_existing(session: Session, change: Change, lease: Any, rows: list[dict[str, Any]]) -> UpdateStatus:
    """`on_conflict='update'`: write the given columns of rows whose key is stored, recompute dependents."""
    meta = change.meta
    computed = {c.name for c in compute.computed_columns(meta)}
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        names = tuple(n for n in row if n != ROWID and n not in computed and n not in meta.primary_key)
        by_columns.setdefault(names, []).append({n: row[n] for n in (ROWID, *names)})
    status = UpdateStatus(operation="updated")
    for names, group in by_columns.items():
        if not names:
            continue
        status = status + updates.apply(session, change, lease, group, list(names))
    return status
