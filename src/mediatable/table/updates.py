"""Changing stored rows: `update()` (values or expressions; dependents recompute), `batch_update()` by
primary key, and `delete()` (view rows go too). Each call is one change: one transaction, one version."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mediatable.catalog import versions
from mediatable.errors import DataError, InvalidArgument
from mediatable.exec import embedding_index, keys, updates
from mediatable.exec import query as run
from mediatable.exec.rows import ROWID, TableSql
from mediatable.exec.status import UpdateStatus, plural
from mediatable.exprs import ColumnRef, Expr
from mediatable.table.base import TableBase


class Updates(TableBase):
    """`update()`, `batch_update()` and `delete()` of a :class:`~mediatable.table.Table`."""

    def update(self, values: Mapping[Any, Any], where: Any = None, *, quiet: bool = False) -> UpdateStatus:
        """Set columns of the rows matching `where` (all rows if None); dependents are recomputed.

        Args:
            values: column (name or `t.col`) -> new value: a constant, or an expression over the
                row's columns (`t.age + 1`), evaluated for each row before any is written.
            where: a filter; None updates every row.
            quiet: do not print the summary line.

        Raises:
            DataError: an unknown or computed column, or a value that does not fit its column.
            ComputeError: an expression failed for a row (names it); nothing is written.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('pets', {'label': mt.String, 'age': mt.Int})
            Created table 'pets'.
            >>> _ = t.insert([{'label': 'cat', 'age': 3}, {'label': 'cow', 'age': 5}], quiet=True)
            >>> t.update({'label': 'dog'}, where=t.label == 'cat')
            Updated 1 row with 0 errors.
            1 row updated, 1 value computed.
            >>> _ = t.update({'age': t.age + 1}, quiet=True)
            >>> t.select(t.age).collect()['age']
            [4, 6]
        """
        self._check_writable()
        self._refresh()
        if self._meta.is_view:
            raise InvalidArgument(f"{self.path!r} is a view: update its base table")
        meta = self._meta
        names = [key.column.name if isinstance(key, ColumnRef) else key for key in values]
        columns = updates.check_settable(meta, names)
        constants: dict[str, Any] = {}
        exprs: dict[str, Expr] = {}
        for column, value in zip(columns, values.values(), strict=True):
            if isinstance(value, Expr):
                exprs[column.name] = value
                continue
            try:
                constants[column.name] = column.col_type.validate(value)
            except DataError as exc:
                raise type(exc)(f"column {column.name!r}: {exc}", column=column.name) from exc
        session = self._session
        status = UpdateStatus(operation="updated")
        if self._matching_rowids(where):  # no version for an update that changes nothing
            inputs = [ColumnRef(c) for c in updates.expression_inputs(meta, exprs)]
            summary = f"updated {', '.join(names)}"
            with (
                session.cache_lease() as lease,
                session.catalog.change(
                    meta, "update", summary=summary, expect_schema_version=meta.family_schema_version
                ) as change,
            ):
                query = self._query().select(*inputs)  # read under the lock: no other change can interleave
                if where is not None:
                    query = query.where(where)
                rows = run.matching_rows(session, query._spec)
                updates.evaluate(session, meta, lease, rows, exprs)
                for row in rows:
                    row.update(constants)
                status = updates.apply(session, change, lease, rows, names)
                versions.note_rows(change.conn, meta.root_id, change.version, updated=len(rows))
            embedding_index.after_change(session, meta)
            self._refresh()
        if not quiet:
            print(f"Updated {plural(status.num_rows, 'row')} with {plural(status.num_excs, 'error')}.")
        return status

    def batch_update(self, rows: Iterable[Mapping[str, Any]], *, quiet: bool = False) -> UpdateStatus:
        """Update rows named by their primary key; each row sets the columns it gives.

        Raises:
            InvalidArgument: the table has no primary key.
            DataError: a row without its key, a key that is not stored, or a bad value; nothing is written.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('pets', {'id': mt.Int, 'name': mt.String}, primary_key=['id'])
            Created table 'pets'.
            >>> _ = t.insert([{'id': 1, 'name': 'Rex'}, {'id': 2, 'name': 'Tom'}], quiet=True)
            >>> t.batch_update([{'id': 2, 'name': 'Tim'}])
            Updated 1 row with 0 errors.
            1 row updated, 1 value computed.
            >>> t.order_by(t.id).select(t.name).collect()['name']
            ['Rex', 'Tim']
        """
        self._check_writable()
        self._refresh()
        meta = self._meta
        if not meta.primary_key:
            raise InvalidArgument(f"batch_update() needs a table with a primary key; {self.path!r} has none")
        checked = []
        for index, record in enumerate(rows):
            names = [n for n in record if n not in meta.primary_key]
            columns = updates.check_settable(meta, list(record))
            row = {}
            for column in columns:
                try:
                    row[column.name] = column.col_type.validate(record[column.name])
                except DataError as exc:
                    raise type(exc)(
                        f"row {index}, column {column.name!r}: {exc}", row=index, column=column.name
                    ) from exc
            checked.append((index, keys.key_of(meta, row, index), row, tuple(names)))
        session = self._session
        with session.cache_lease() as lease, session.catalog.change(meta, "update", summary="batch update") as change:
            stored = keys.stored_rowids(change.conn, change.meta, [key for _, key, _, _ in checked])
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for index, key, row, names in checked:
                if key not in stored:
                    raise DataError(f"row {index}: no row of {self.path!r} has key {keys.show_key(key)}", row=index)
                groups.setdefault(names, []).append({ROWID: stored[key], **{n: row[n] for n in names}})
            status = UpdateStatus(operation="updated")
            for names, group in groups.items():
                if names:
                    status = status + updates.apply(session, change, lease, group, list(names))
            status.num_rows = sum(len(g) for n, g in groups.items() if n)
            versions.note_rows(change.conn, meta.root_id, change.version, updated=status.num_rows)
        embedding_index.after_change(session, meta)
        self._refresh()
        if not quiet:
            print(f"Updated {plural(status.num_rows, 'row')} with {plural(status.num_excs, 'error')}.")
        return status

    def delete(self, where: Any = None, *, quiet: bool = False) -> UpdateStatus:
        """Delete the rows matching `where` (all rows if None), and their rows in views.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('pets', {'label': mt.String})
            Created table 'pets'.
            >>> _ = t.insert([{'label': 'cat'}, {'label': 'dog'}], quiet=True)
            >>> t.delete(where=t.label == 'cat')
            Deleted 1 row.
            1 row deleted, 0 values computed.
        """
        self._check_writable()
        self._refresh()
        if self._meta.is_view:
            raise InvalidArgument(f"{self.path!r} is a view: delete from its base table")
        rowids = self._matching_rowids(where)
        meta = self._meta
        if rowids:
            catalog = self._session.catalog
            with catalog.change(meta, "delete", summary="deleted rows") as change:
                for view in catalog.views(change.meta, change.conn):
                    TableSql(view).delete(change.conn, rowids, change.version, by_base=True)
                deleted = TableSql(change.meta).delete(change.conn, rowids, change.version)
                versions.note_rows(change.conn, meta.root_id, change.version, deleted=deleted)
            self._refresh()
        if not quiet:
            print(f"Deleted {plural(len(rowids), 'row')}.")
        return UpdateStatus(num_rows=len(rowids), operation="deleted")

    def _matching_rowids(self, where: Any) -> list[int]:
        query = self._query().select()
        if where is not None:
            query = query.where(where)
        return [row[ROWID] for row in run.matching_rows(self._session, query._spec)]
