"""Reading and writing a table's rows in SQL (the data tables, not the catalog's own tables).

A view's rows live in its own SQL table joined to its base table by `_base_rowid`; this module
hides that: callers ask for columns by name and get plain dicts of Python values, with a
:class:`~mediatable.exprs.CellError` where a computed cell holds an error.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from mediatable import types as ts
from mediatable.catalog import versions
from mediatable.catalog.model import BASE_ROWID, ROWID, V_MIN, Column, TableMeta
from mediatable.exprs import CellError

__all__ = ["BASE_ROWID", "READ_BATCH", "ROWID", "TableSql"]
READ_BATCH = 2000
_AS_IS = frozenset({"Int", "Float", "String", "Bool", "Image", "Video", "Audio", "Document"})  # to_sql is identity
_READ_AS_IS = _AS_IS - {"Bool"}  # what SQLite's driver returns as users see it (a Bool comes back as 0 or 1)


class TableSql:
    """SQLAlchemy objects for one table or view: its data table, its base's, and column lookups.

    With `alias`, the SQL tables are read under that name (and `<alias>_b` for a view's base), so
    the same table can appear twice in one statement (self-joins, a view joined with its base).
    """

    def __init__(self, meta: TableMeta, alias: str | None = None) -> None:
        self.meta = meta
        # An earlier version reads through a derived table with the data table's column names.
        table: Any = meta.sql_table() if meta.at_version is None else versions.rows_at(meta, meta.at_version)
        self.table: Any = table if alias is None else table.alias(alias)
        base_alias = f"{alias}_b" if alias is not None else None
        self.base = TableSql(meta.base, base_alias) if meta.base is not None else None

    @property
    def columns(self) -> dict[str, Column]:
        """The columns rows can be read with, by name."""
        return self.meta.columns

    def tiebreak(self) -> list[Any]:
        """What orders rows that sort keys leave tied: the row id."""
        return [self.table.c[ROWID]]

    def sql_table_of(self, column: Column) -> sa.Table:
        if column.owner_id == self.meta.id:
            return self.table
        if self.base is None:
            raise KeyError(column.name)
        return self.base.sql_table_of(column)

    def value_column(self, column: Column) -> sa.ColumnElement[Any] | None:
        """The SQL column of a stored value (used to push filters down to SQL)."""
        try:
            return self.sql_table_of(column).c[column.sql_name]
        except KeyError:
            return None

    def error_columns(self, column: Column) -> tuple[sa.ColumnElement[Any], sa.ColumnElement[Any]]:
        """The SQL columns of a computed column's stored error type and message."""
        sql_table = self.sql_table_of(column)
        errortype, errormsg = column.error_names
        return sql_table.c[errortype], sql_table.c[errormsg]

    def from_clause(self) -> sa.FromClause:
        if self.base is None:
            return self.table
        return self.table.join(self.base.from_clause(), self.table.c[BASE_ROWID] == self.base.table.c[ROWID])

    def select(self, columns: Sequence[Column]) -> sa.Select[Any]:
        """SELECT of `_rowid` (and `_base_rowid` for views) plus each column's value and error columns."""
        items: list[Any] = [self.table.c[ROWID]]
        if self.base is not None:
            items.append(self.table.c[BASE_ROWID])
        for column in columns:
            sql_table = self.sql_table_of(column)
            items.append(sql_table.c[column.sql_name].label(column.sql_name))
            if column.is_computed:
                errortype, errormsg = column.error_names
                items += [sql_table.c[errortype].label(errortype), sql_table.c[errormsg].label(errormsg)]
        return sa.select(*items).select_from(self.from_clause())

    def read(
        self,
        conn: sa.Connection,
        columns: Sequence[Column],
        where: sa.ColumnElement[Any] | None = None,
        order_by: Sequence[Any] = (),
        limit: int | None = None,
        rowids: Iterable[int] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Rows as dicts `{name: value or CellError, "_rowid": id}`, in `_rowid` order unless ordered."""
        query = self.select(columns)
        if where is not None:
            query = query.where(where)
        if rowids is not None:
            query = query.where(self.table.c[ROWID].in_(list(rowids)))
        query = query.order_by(*order_by, *self.tiebreak())
        if limit is not None:
            query = query.limit(limit)
        if conn.dialect.name == "sqlite" and all(c.col_type.name in _READ_AS_IS for c in columns):
            yield from self._records_to_rows(self._read_sqlite(conn, query), columns)
            return
        result = conn.execute(query.execution_options(yield_per=READ_BATCH))  # this statement only: conn may write next
        yield from self._records_to_rows(result, columns)

    def _read_sqlite(self, conn: sa.Connection, query: sa.Select[Any]) -> Iterator[Sequence[Any]]:
        """The records of `query` from the SQLite driver's own cursor, as tuples.

        SQLAlchemy's per-row result processing costs more than the read itself (a warm header-only
        column reads thousands of rows per second); :meth:`read` takes this path for values the driver
        returns as they are. See :meth:`_update_sqlite` for the write side.
        """
        compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        params = [compiled.params[name] for name in compiled.positiontup or ()]
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(str(compiled), params)
            while batch := cursor.fetchmany(READ_BATCH):
                yield from batch
        finally:
            cursor.close()

    def _records_to_rows(self, records: Iterable[Sequence[Any]], columns: Sequence[Column]) -> Iterator[dict[str, Any]]:
        """Rows as :meth:`read` gives them, from records laid out as :meth:`select` selects."""
        base = self.base is not None
        layout = []  # per column: (name, value index, errortype index or -1, type, converts)
        at = 2 if base else 1
        for column in columns:
            errors = at + 1 if column.is_computed else -1
            converts = type(column.col_type).from_sql is not ts.ColumnType.from_sql
            layout.append((column.name, at, errors, column.col_type, converts))
            at += 3 if column.is_computed else 1
        for record in records:
            row: dict[str, Any] = {ROWID: record[0]}
            if base:
                row[BASE_ROWID] = record[1]
            for name, index, errors, col_type, converts in layout:
                if errors >= 0 and record[errors] is not None:
                    row[name] = CellError(record[errors], record[errors + 1] or "", stored=True)
                else:
                    row[name] = col_type.from_sql(record[index]) if converts else record[index]
            yield row

    def _sql_values(
        self, cells: Mapping[str, list[Any]], count: int, columns: Sequence[Column]
    ) -> dict[str, list[Any]]:
        """What the SQL columns store, a column at a time: SQL column name -> one value per row.

        `cells`: the values by column name (a column left out is None in every row).
        """
        out: dict[str, list[Any]] = {}
        if self.base is not None:
            out[BASE_ROWID] = list(cells[BASE_ROWID])
        for column in columns:
            values = cells.get(column.name)
            if values is None:
                values = [None] * count
            failed = CellError in set(map(type, values))
            if column.is_computed:
                errortype, errormsg = column.error_names
                out[errortype] = [v.errortype[:128] if isinstance(v, CellError) else None for v in values]
                out[errormsg] = [v.errormsg if isinstance(v, CellError) else None for v in values]
            if failed:
                values = [None if isinstance(v, CellError) else v for v in values]
            if column.col_type.name not in _AS_IS:
                values = [column.col_type.to_sql(v) for v in values]
            out[column.sql_name] = values
        return out

    def insert_values(self, column: Column, value: Any) -> dict[str, Any]:
        """The SQL column values that store `value` (or a CellError) in `column`."""
        out: dict[str, Any] = {}
        if isinstance(value, CellError):
            out[column.sql_name] = None
        else:
            out[column.sql_name] = column.col_type.to_sql(value)
        if column.is_computed:
            errortype, errormsg = column.error_names
            out[errortype] = value.errortype[:128] if isinstance(value, CellError) else None
            out[errormsg] = value.errormsg if isinstance(value, CellError) else None
        return out

    def insert(
        self, conn: sa.Connection, rows: Sequence[dict[str, Any]], columns: Sequence[Column], version: int
    ) -> list[int]:
        """Insert rows written at `version` (dicts by column name; views also need `_base_rowid`).

        Returns the new rowids in order.
        """
        if not rows:
            return []
        names = [c.name for c in columns] + ([BASE_ROWID] if self.base is not None else [])
        return self.insert_columns(conn, {n: [row.get(n) for row in rows] for n in names}, len(rows), columns, version)

    def insert_columns(
        self, conn: sa.Connection, cells: Mapping[str, list[Any]], count: int, columns: Sequence[Column], version: int
    ) -> list[int]:
        """Insert `count` rows given a column at a time (column name -> values; views also `_base_rowid`).

        Returns the new rowids in order.
        """
        if not count:
            return []
        values = {V_MIN: [version] * count, **self._sql_values(cells, count, columns)}
        if conn.dialect.name == "sqlite":
            return self._insert_sqlite(conn, values, count, raw=all(c.col_type.name in _AS_IS for c in columns))
        params = [dict(zip(values, row, strict=True)) for row in zip(*values.values(), strict=True)]
        rowids: list[int] = []
        for start in range(0, len(params), 1000):
            batch = params[start : start + 1000]
            result = conn.execute(
                self.table.insert().returning(self.table.c[ROWID], sort_by_parameter_order=True), batch
            )
            rowids.extend(r[0] for r in result)
        return rowids

    def _insert_sqlite(self, conn: sa.Connection, values: dict[str, list[Any]], count: int, raw: bool) -> list[int]:
        """One executemany, with the rowids chosen here; `raw`: on the driver's own cursor.

        The transaction holds SQLite's write lock from BEGIN (IMMEDIATE), so the next ids are ours.
        RETURNING would run row by row (SQLite cannot return rows in parameter order otherwise), and
        SQLAlchemy's per-row parameter processing costs more than the insert itself — needed only
        for values the driver cannot store as they are (timestamps, JSON, arrays). Rows go
        :data:`ROWS_PER_STATEMENT` to a statement (see :func:`_insert_many_rows`).
        """
        quote = conn.dialect.identifier_preparer.quote
        table, rowid = quote(self.table.name), quote(ROWID)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            first = cursor.execute(f"SELECT coalesce(max({rowid}), 0) FROM {table}").fetchone()[0] + 1
            rowids = list(range(first, first + count))
            values = {ROWID: rowids, **values}
            rows = zip(*values.values(), strict=True)
            if not raw:
                conn.execute(self.table.insert(), [dict(zip(values, row, strict=True)) for row in rows])
                return rowids
            statement = f"INSERT INTO {table} ({', '.join(quote(n) for n in values)}) VALUES "
            _insert_many_rows(cursor, statement, rows, count, len(values))
        finally:
            cursor.close()
        return rowids

    def update(
        self, conn: sa.Connection, rows: Sequence[dict[str, Any]], columns: Sequence[Column], version: int | None
    ) -> None:
        """Write `columns` of each row (dict with `_rowid`) back to its own SQL table, as of `version`.

        The rows' earlier images go to the history table first, so earlier versions still read them.
        `version=None` fills columns added by the change itself: no earlier version reads them, so
        rows keep their version and no image is kept.
        """
        if not rows or not columns:
            return
        names = [c for column in columns for c in self.insert_values(column, None)]
        if version is not None:
            versions.retire_rows(conn, self.meta, [row[ROWID] for row in rows], version)
        if conn.dialect.name == "sqlite" and all(c.col_type.name in _AS_IS for c in columns):
            self._update_sqlite(conn, rows, columns, names, version)
            return
        values: dict[str, Any] = {c: sa.bindparam(c) for c in names}
        if version is not None:
            values[V_MIN] = version
        statement = self.table.update().where(self.table.c[ROWID] == sa.bindparam("_key")).values(values)
        params = []
        for row in rows:
            values = {"_key": row[ROWID]}
            for column in columns:
                values.update(self.insert_values(column, row.get(column.name)))
            params.append(values)
        for start in range(0, len(params), 1000):
            conn.execute(statement, params[start : start + 1000])

    def _update_sqlite(
        self,
        conn: sa.Connection,
        rows: Sequence[dict[str, Any]],
        columns: Sequence[Column],
        names: list[str],
        version: int | None,
    ) -> None:
        """One executemany on the driver's cursor, for values the driver stores as they are.

        SQLAlchemy's per-row parameter processing costs several times the UPDATE itself (a warm
        header-only column writes thousands of rows per second); see :meth:`_insert_sqlite`.
        """
        preparer = conn.dialect.identifier_preparer
        assignments = [f"{preparer.quote(n)} = ?" for n in names]
        if version is not None:
            assignments.append(f"{preparer.quote(V_MIN)} = {int(version)}")
        statement = (
            f"UPDATE {preparer.quote(self.table.name)} SET {', '.join(assignments)} WHERE {preparer.quote(ROWID)} = ?"
        )
        params = []
        for row in rows:
            values: list[Any] = []
            for column in columns:
                value = row.get(column.name)
                if isinstance(value, CellError):
                    values += [None, value.errortype[:128], value.errormsg] if column.is_computed else [None]
                else:
                    values += [value, None, None] if column.is_computed else [value]
            values.append(row[ROWID])
            params.append(tuple(values))
        conn.exec_driver_sql(statement, params)

    def delete(self, conn: sa.Connection, rowids: Sequence[int], version: int, by_base: bool = False) -> int:
        """Delete rows at `version` (by `_rowid`, or for a view by `_base_rowid`); returns how many went.

        Their images go to the history table first, so earlier versions still read them.
        """
        key = self.table.c[BASE_ROWID if by_base else ROWID]
        deleted = 0
        for start in range(0, len(rowids), 1000):
            chunk = list(rowids[start : start + 1000])
            own = [r[0] for r in conn.execute(sa.select(self.table.c[ROWID]).where(key.in_(chunk)))]
            versions.retire_rows(conn, self.meta, own, version)
            deleted += conn.execute(self.table.delete().where(self.table.c[ROWID].in_(own))).rowcount
        return deleted


# Rows per multi-row INSERT on SQLite: one statement step stores them all, which halves SQLite's
# own cost per row against one step per row (measured at 100k rows); capped by the driver's limit
# on bound parameters.
ROWS_PER_STATEMENT = 200


def _insert_many_rows(cursor: Any, statement: str, rows: Iterable[tuple[Any, ...]], count: int, width: int) -> None:
    """Run `statement` (`INSERT INTO t (a, b) VALUES `) for `count` rows of `width` values, several rows a step."""
    limit = cursor.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    per = max(1, min(ROWS_PER_STATEMENT, limit // width, count))
    marks = "(" + ", ".join("?" * width) + ")"
    flat = list(itertools.chain.from_iterable(rows))
    step = per * width
    whole = len(flat) - len(flat) % step
    if whole:
        cursor.executemany(statement + ", ".join([marks] * per), (flat[i : i + step] for i in range(0, whole, step)))
    if whole < len(flat):
        cursor.execute(statement + ", ".join([marks] * ((len(flat) - whole) // width)), flat[whole:])
