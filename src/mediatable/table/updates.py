"""Changing stored rows: `update()` (dependents recompute) and `delete()` (view rows go too)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mediatable.errors import DataError, InvalidArgument
from mediatable.exec import compute
from mediatable.exec import query as run
from mediatable.exec.rows import BASE_ROWID, ROWID, TableSql
from mediatable.exec.status import UpdateStatus, plural
from mediatable.exprs import ColumnRef
from mediatable.table.base import TableBase


class Updates(TableBase):
    """`update()` and `delete()` of a :class:`~mediatable.table.Table`."""

    def update(self, values: Mapping[str, Any], where: Any = None, *, quiet: bool = False) -> UpdateStatus:
        """Set columns of the rows matching `where` (all rows if None); dependents are recomputed.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('pets', {'label': mt.String})
            Created table 'pets'.
            >>> _ = t.insert([{'label': 'cat'}, {'label': 'cow'}], quiet=True)
            >>> t.update({'label': 'dog'}, where=t.label == 'cat')
            Updated 1 row with 0 errors.
            1 row updated, 1 value computed.
        """
        if self._fresh().is_view:
            raise InvalidArgument(f"{self.path!r} is a view: update its base table")
        own = self._meta.own_columns
        new_values: dict[str, Any] = {}
        for key, value in values.items():
            name = key.column.name if isinstance(key, ColumnRef) else key
            column = own.get(name)
            if column is None:
                raise DataError(f"unknown column {name!r} in update of {self.path!r}", column=name)
            if column.is_computed:
                raise DataError(f"column {name!r} is computed; use recompute_columns()", column=name)
            try:
                new_values[name] = column.col_type.validate(value)
            except DataError as exc:
                raise type(exc)(f"column {name!r}: {exc}", column=name) from exc
        rowids = self._matching_rowids(where)
        sql = TableSql(self._meta)
        changed = [own[n] for n in new_values]
        rows = [{ROWID: rowid, **new_values} for rowid in rowids]
        with self._session.engine.begin() as conn:
            sql.update(conn, rows, changed)
        status = UpdateStatus(num_rows=len(rows), num_computed_values=len(rows) * len(changed), operation="updated")
        dependents = compute.dependents_of(self._meta, set(new_values), include=False)
        if dependents and rowids:
            status = status + compute.fill(
                self._session, self._meta, dependents, on_error=None, desc="Recomputing", rowids=rowids
            )
            status.num_rows = len(rows)
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
        if self._fresh().is_view:
            raise InvalidArgument(f"{self.path!r} is a view: delete from its base table")
        rowids = self._matching_rowids(where)
        sql = TableSql(self._meta)
        catalog = self._session.catalog
        views = [TableSql(catalog.get_table(p)) for p in catalog.view_paths(self._meta)]
        with self._session.engine.begin() as conn:
            for start in range(0, len(rowids), 1000):
                chunk = rowids[start : start + 1000]
                for view in views:
                    conn.execute(view.table.delete().where(view.table.c[BASE_ROWID].in_(chunk)))
                conn.execute(sql.table.delete().where(sql.table.c[ROWID].in_(chunk)))
        if not quiet:
            print(f"Deleted {plural(len(rowids), 'row')}.")
        return UpdateStatus(num_rows=len(rowids), operation="deleted")

    def _matching_rowids(self, where: Any) -> list[int]:
        query = self._query().select()
        if where is not None:
            query = query.where(where)
        return [row[ROWID] for row in run.matching_rows(self._session, query._spec)]
