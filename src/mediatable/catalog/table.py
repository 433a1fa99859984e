"""`Table`: the handle users hold for a table or view — schema, inserts, updates, computed columns, queries.

Lifecycle: a handle is cheap; it describes the table as of when it was obtained and reloads that
description after each of its own schema changes. Rows live in the database, so every process
sees every committed change. Writes are one transaction per operation: all or nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from mediatable.catalog.catalog import check_choice
from mediatable.catalog.model import Column, TableMeta
from mediatable.errors import (
    AlreadyExists,
    ColumnNotFound,
    ComputeError,
    DataError,
    ExprError,
    InvalidArgument,
)
from mediatable.exec.pipeline import Pipeline, Target
from mediatable.exec.query import Query, ResultSet
from mediatable.exec.rows import BASE_ROWID, ROWID, TableSql
from mediatable.exec.status import UpdateStatus, progress_bar
from mediatable.exprs import serialize
from mediatable.exprs.base import CellError, ColumnRef, Expr, as_expr
from mediatable.importers import read_rows
from mediatable.io.urls import redact_url

if TYPE_CHECKING:
    from mediatable.session import Session

_ON_ERROR = ("abort", "ignore")
log = logging.getLogger(__name__)


class Table:
    """A table or view in the catalog.

    Columns are attributes (`t.image`, also `t['image']`) and build expressions.

    Examples:
        >>> import mediatable as mt, tempfile
        >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> t = mt.create_table('pets', {'name': mt.String, 'age': mt.Int})
        >>> t.insert([{'name': 'Rex', 'age': 3}], quiet=True)
        1 row inserted, 2 values computed.
        >>> t.where(t.age > 2).select(t.name).collect()['name']
        ['Rex']
    """

    def __init__(self, session: Session, meta: TableMeta) -> None:
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_meta", meta)

    # -- schema -----------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """The table's catalog path (`dir.name`)."""
        return self._meta.path

    @property
    def columns(self) -> list[str]:
        """Column names in order (for views: base columns, iterator outputs, own computed columns)."""
        return list(self._meta.columns)

    def __getattr__(self, name: str) -> ColumnRef:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"use add_computed_column({name}=...) to add a column to {self.path!r}")

    def __getitem__(self, name: str) -> ColumnRef:
        column = self._meta.columns.get(name)
        if column is None:
            raise ColumnNotFound(
                f"column {name!r} does not exist in {self._meta.path!r} (columns: {', '.join(self.columns)})"
            )
        return ColumnRef(column)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.columns))

    def describe(self) -> str:
        """A readable schema: one line per column with its type and, for computed ones, its expression."""
        kind = "view" if self._meta.is_view else "table"
        lines = [f"{kind} {self._meta.path!r}"]
        if self._meta.is_view and self._meta.base is not None:
            lines[0] += f" over {self._meta.base.path!r}"
        width = max([len(n) for n in self.columns] + [6])
        for name, column in self._meta.columns.items():
            line = f"  {name.ljust(width)}  {column.col_type!r}"
            if column.is_computed:
                line += f"  = {column.computed.get()!r}"
            lines.append(line)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.describe()

    def _set_meta(self, meta: TableMeta) -> None:
        object.__setattr__(self, "_meta", meta)

    # -- queries ----------------------------------------------------------------------------
    def _query(self) -> Query:
        return Query(self._session, self._meta)

    def select(self, *exprs: Any, **named: Any) -> Query:
        """Start a query with output columns. See :meth:`Query.select`."""
        return self._query().select(*exprs, **named)

    def where(self, predicate: Any) -> Query:
        """Start a query with a filter. See :meth:`Query.where`."""
        return self._query().where(predicate)

    def order_by(self, *exprs: Any, asc: bool = True) -> Query:
        """Start a query with a sort order. See :meth:`Query.order_by`."""
        return self._query().order_by(*exprs, asc=asc)

    def limit(self, n: int) -> Query:
        """Start a query returning at most `n` rows."""
        return self._query().limit(n)

    def collect(self) -> ResultSet:
        """All rows, all columns."""
        return self._query().collect()

    def head(self, n: int = 10) -> ResultSet:
        """The first `n` rows."""
        return self._query().head(n)

    def count(self) -> int:
        """Number of rows."""
        return self._query().count()

    def to_pandas(self) -> pd.DataFrame:
        """All rows as a pandas DataFrame."""
        return self.collect().to_pandas()

    # -- inserts ----------------------------------------------------------------------------
    def insert(
        self,
        rows: Iterable[Mapping[str, Any]] | pd.DataFrame | str | os.PathLike[str] | None = None,
        /,
        *,
        on_error: str | None = None,
        quiet: bool = False,
        **values: Any,
    ) -> UpdateStatus:
        """Insert rows; media cells are URLs or paths, stored as references (nothing is downloaded).

        Computed columns are filled for the new rows, and views over this table get their rows.

        Args:
            rows: a list of dicts, a pandas DataFrame, or a path to a CSV / Parquet file.
            on_error: None (default): each computed column follows its own `on_error` (by default
                'ignore': a failing cell keeps its error, the other cells and rows are stored);
                'abort': any failing computed value aborts the whole insert, nothing is stored.
            quiet: do not print the summary line.
            **values: a single row given as keyword arguments (`t.insert(image='a.jpg', label='cat')`).

        Returns:
            An :class:`UpdateStatus`, e.g. `3 rows inserted, 6 values computed.`

        Raises:
            DataError: an unknown column or a value of the wrong type; names the row index,
                the column and the value. Nothing of the call is inserted.

        Examples:
            >>> # t.insert([{'image': 's3://bucket/cat.jpg', 'label': 'cat'}])
        """
        if on_error is not None:
            check_choice("on_error", on_error, _ON_ERROR)
        if self._meta.is_view:
            raise InvalidArgument(f"{self.path!r} is a view: insert into its base table {self._meta.base.path!r}")
        if rows is not None and values:
            raise InvalidArgument("pass rows or keyword values, not both")
        if rows is None:
            if not values:
                raise InvalidArgument("insert() needs rows (a list of dicts, a DataFrame or a file) or keyword values")
            rows = [values]
        records = read_rows(rows)
        validated = self._validate_rows(records)

        status = UpdateStatus(operation="inserted")
        bar = progress_bar(self._session.settings, f"Inserting rows into `{self._meta.name}`", total=None)
        try:
            with self._session.cache_lease() as lease:
                computed = self._computed_columns()
                self._compute(lease, validated, computed, on_error, progress=None)
                stored = list(self._meta.own_columns.values())
                with self._session.engine.begin() as conn:
                    rowids = TableSql(self._meta).insert(conn, validated, stored)
                    bar.update(len(rowids))
                for row, rowid in zip(validated, rowids, strict=True):
                    row[ROWID] = rowid
                status = _count(status, validated, stored, self._meta.path)
                for view_path in self._session.catalog.view_paths(self._meta):
                    view = self._session.get_table(view_path)
                    status = status + view._propagate(lease, validated, on_error)
        finally:
            bar.close()
        status.num_rows = len(validated)
        if not quiet:
            print(f"Inserted {status.num_rows} {_rows_word(status.num_rows)} with {status.num_excs} errors.")
        return status

    def _validate_rows(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        columns = self._meta.own_columns
        out: list[dict[str, Any]] = []
        for index, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise DataError(
                    f"row {index}: expected a dict of column values, got {type(record).__name__}", row=index
                )
            row: dict[str, Any] = {}
            for name, value in record.items():
                column = columns.get(name)
                if column is None:
                    raise DataError(
                        f"row {index}: unknown column {name!r} (columns of {self.path!r}: "
                        f"{', '.join(c for c, col in columns.items() if not col.is_computed)})",
                        row=index,
                        column=name,
                    )
                if column.is_computed:
                    raise DataError(
                        f"row {index}: column {name!r} is computed and cannot be set", row=index, column=name
                    )
                try:
                    row[name] = column.col_type.validate(_none_if_missing(value))
                except DataError as exc:
                    raise type(exc)(f"row {index}, column {name!r}: {exc}", row=index, column=name) from exc
            out.append(row)
        return out

    def _computed_columns(self) -> list[Column]:
        return sorted((c for c in self._meta.own_columns.values() if c.is_computed), key=lambda c: c.position)

    def _targets(self, columns: Sequence[Column], on_error: str | None = None) -> list[Target]:
        return [
            Target(
                name=c.name,
                expr=c.computed.get(),
                col_type=c.col_type,
                table_id=self._meta.id,
                on_error=on_error or c.on_error or "ignore",
                table_path=self._meta.path,
            )
            for c in columns
        ]

    def _compute(
        self,
        lease: Any,
        rows: list[dict[str, Any]],
        columns: Sequence[Column],
        on_error: str | None,
        progress: Any,
    ) -> None:
        if not columns or not rows:
            return
        pipeline = Pipeline(lease, self._session.media_store, self._session.settings.compute_workers, progress)
        pipeline.run(rows, self._targets(columns, on_error))

    def _propagate(self, lease: Any, base_rows: list[dict[str, Any]], on_error: str | None) -> UpdateStatus:
        """Views: run the iterator over new base rows, compute own columns, insert the view rows.

        Source files are prefetched concurrently; a base row whose file cannot be read or iterated
        contributes no rows and counts as one error (or aborts, with `on_error='abort'`).
        """
        spec = self._meta.iterator or {}
        iterator_cls = self._session.iterator_class(spec["name"])
        source, kwargs = spec["source"], spec.get("kwargs", {})
        schema = iterator_cls.output_schema
        sources = [(row, row.get(source)) for row in base_rows if isinstance(row.get(source), str)]
        view_rows: list[dict[str, Any]] = []
        failed = 0
        for (base_row, url), local in zip(sources, lease.get_many([u for _, u in sources]), strict=True):
            try:
                if isinstance(local, BaseException):
                    raise local
                produced = []
                for item in iterator_cls(str(local), **kwargs):
                    row = {k: v for k, v in base_row.items() if k != ROWID}
                    row[BASE_ROWID] = base_row[ROWID]
                    for name, col_type in schema.items():
                        value = item[name]
                        if col_type.is_media and value is not None:
                            value = self._session.media_store.save(value, self._meta.id, name)
                        row[name] = value
                    produced.append(row)
            except Exception as exc:
                reason = str(exc).replace(str(local), redact_url(url))  # name the URL, not the cache file
                message = f"{spec['name']} over {self._meta.base.path}.{source} (row {base_row[ROWID]}): {reason}"
                if on_error == "abort":
                    raise ComputeError(message, table=self.path, column=source, row=base_row[ROWID]) from exc
                log.warning("view %s: %s", self.path, message)
                failed += 1
                continue
            view_rows.extend(produced)
        computed = self._computed_columns()
        self._compute(lease, view_rows, computed, on_error, progress=None)
        with self._session.engine.begin() as conn:
            TableSql(self._meta).insert(conn, view_rows, list(self._meta.own_columns.values()))
        status = _count(UpdateStatus(operation="inserted"), view_rows, computed, self._meta.path)
        if failed:
            status.num_excs += failed
            status.cols_with_excs = sorted({*status.cols_with_excs, f"{self.path} (iterator)"})
        return status

    # -- computed columns -------------------------------------------------------------------
    def add_computed_column(
        self,
        *,
        on_error: str = "ignore",
        if_exists: str = "error",
        destination: str | None = None,
        quiet: bool = False,
        **named: Any,
    ) -> UpdateStatus:
        """Add columns computed from others; fill them for existing rows and keep them current.

        Args:
            on_error: 'ignore' (default): a failing cell keeps its error, readable as
                `t.col.errortype` / `t.col.errormsg`; 'abort': the first error undoes the whole call.
            if_exists: 'error', 'ignore' or 'replace' when a column of that name exists.
            destination: reserved for writing generated media to object storage (later); None writes
                generated media under `<home>/media`.
            quiet: do not print the per-column summary lines.
            **named: `name=expression` pairs, e.g. `width=t.image.width`.

        Returns:
            An :class:`UpdateStatus`: `N rows updated, M values computed.`

        Examples:
            >>> # t.add_computed_column(width=t.image.width)
            >>> # Added 3 column values with 0 errors.
        """
        check_choice("on_error", on_error, _ON_ERROR)
        check_choice("if_exists", if_exists, ("error", "ignore", "replace"))
        if not named:
            raise InvalidArgument("add_computed_column() needs name=expression")
        if destination is not None:
            raise InvalidArgument("destination= is not supported yet: generated media is written under <home>/media")
        total = UpdateStatus(operation="updated")
        for name, value in named.items():
            expr = as_expr(value)
            self._check_expr(expr)
            if name in self._meta.columns:
                if if_exists == "ignore":
                    continue
                if if_exists == "error":
                    raise AlreadyExists(f"column {name!r} already exists in {self.path!r}")
            column = Column(
                name=name,
                col_type=expr.col_type,
                table_name=self.path,
                owner_id=self._meta.id,
                position=0,
                computed_spec=serialize.to_dict(expr),
                on_error=on_error,
            )
            self._set_meta(self._session.catalog.add_column(self._meta, column, if_exists=if_exists))
            new_column = self._meta.own_columns[name]
            try:
                status = self._fill([new_column], on_error=on_error, desc=f"Computing `{name}`")
            except BaseException:
                self._set_meta(self._session.catalog.drop_column(self._meta, name))
                raise
            if not quiet:
                print(f"Added {status.num_computed_values} column values with {status.num_excs} errors.")
            total = total + status
            total.num_rows = status.num_rows
        return total

    def _check_expr(self, expr: Expr) -> None:
        visible = self._meta.columns
        for node in expr.walk():
            if isinstance(node, ColumnRef) and visible.get(node.column.name) is None:
                raise ExprError(f"{node!r} is not a column of {self.path!r}")
            if isinstance(node, ColumnRef) and node.column.owner_id not in self._meta.owner_ids():
                raise ExprError(f"{node!r} belongs to another table than {self.path!r}")
        serialize.to_dict(expr)  # fails early if it cannot be stored

    def _fill(
        self,
        columns: Sequence[Column],
        *,
        on_error: str | None,
        desc: str,
        rowids: Iterable[int] | None = None,
        errors_only: bool = False,
    ) -> UpdateStatus:
        """Compute `columns` for existing rows (all, or `rowids`) and write them back."""
        sql = TableSql(self._meta)
        inputs = _referenced(columns, self._meta)
        with self._session.engine.connect() as conn:
            rows = list(sql.read(conn, inputs + list(columns), rowids=rowids))
        if errors_only:
            rows = [r for r in rows if any(isinstance(r.get(c.name), CellError) for c in columns)]
        bar = progress_bar(self._session.settings, desc, total=len(rows))
        try:
            with self._session.cache_lease() as lease:
                self._compute(lease, rows, columns, on_error, progress=bar.update)
        finally:
            bar.close()
        with self._session.engine.begin() as conn:
            sql.update(conn, rows, columns)
        return _count(UpdateStatus(operation="updated"), rows, columns, self.path)

    def recompute_columns(self, *names: str, errors_only: bool = False, quiet: bool = False) -> UpdateStatus:
        """Compute the named computed columns again (and the columns that depend on them).

        Args:
            *names: computed column names.
            errors_only: only rows where one of them currently holds an error.

        Examples:
            >>> # t.recompute_columns('width', errors_only=True)
        """
        columns = self._with_dependents(names)
        status = self._fill(columns, on_error=None, desc="Recomputing", errors_only=errors_only)
        if not quiet:
            print(f"Recomputed {status.num_computed_values} values with {status.num_excs} errors.")
        return status

    def _with_dependents(self, names: Iterable[str]) -> list[Column]:
        chosen: set[str] = set()
        for name in names:
            column = self._meta.own_columns.get(name)
            if column is None or not column.is_computed:
                raise ColumnNotFound(f"{name!r} is not a computed column of {self.path!r}")
            chosen.add(name)
        return self._dependents_of(chosen, include=True)

    def _dependents_of(self, names: set[str], include: bool) -> list[Column]:
        ordered = self._computed_columns()
        affected = set(names)
        out = []
        for column in ordered:
            refs = {n.column.name for n in column.computed.get().walk() if isinstance(n, ColumnRef)}
            if column.name in names and include:
                out.append(column)
            elif refs & affected:
                affected.add(column.name)
                out.append(column)
        return out

    def drop_column(self, name: str) -> None:
        """Drop a column; refuses while computed columns or views depend on it."""
        self._set_meta(self._session.catalog.drop_column(self._meta, name))

    # -- update / delete --------------------------------------------------------------------
    def update(self, values: Mapping[str, Any], where: Any = None, *, quiet: bool = False) -> UpdateStatus:
        """Set columns of the rows matching `where` (all rows if None); dependents are recomputed.

        Examples:
            >>> # t.update({'label': 'dog'}, where=t.label == 'cat')
        """
        if self._meta.is_view:
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
        dependents = self._dependents_of(set(new_values), include=False)
        if dependents and rowids:
            status = status + self._fill(dependents, on_error=None, desc="Recomputing", rowids=rowids)
            status.num_rows = len(rows)
        if not quiet:
            print(f"Updated {status.num_rows} {_rows_word(status.num_rows)} with {status.num_excs} errors.")
        return status

    def delete(self, where: Any = None, *, quiet: bool = False) -> UpdateStatus:
        """Delete the rows matching `where` (all rows if None), and their rows in views.

        Examples:
            >>> # t.delete(where=t.label == 'cat')
        """
        if self._meta.is_view:
            raise InvalidArgument(f"{self.path!r} is a view: delete from its base table")
        rowids = self._matching_rowids(where)
        sql = TableSql(self._meta)
        views = [TableSql(self._session.catalog.get_table(p)) for p in self._session.catalog.view_paths(self._meta)]
        with self._session.engine.begin() as conn:
            for start in range(0, len(rowids), 1000):
                chunk = rowids[start : start + 1000]
                for view in views:
                    conn.execute(view.table.delete().where(view.table.c[BASE_ROWID].in_(chunk)))
                conn.execute(sql.table.delete().where(sql.table.c[ROWID].in_(chunk)))
        if not quiet:
            print(f"Deleted {len(rowids)} {_rows_word(len(rowids))}.")
        return UpdateStatus(num_rows=len(rowids), operation="deleted")

    def _matching_rowids(self, where: Any) -> list[int]:
        query = self._query().select()
        if where is not None:
            query = query.where(where)
        return [row[ROWID] for row in query._rows()]


def _referenced(columns: Sequence[Column], meta: TableMeta) -> list[Column]:
    names: list[str] = []
    for column in columns:
        for node in column.computed.get().walk():
            if isinstance(node, ColumnRef) and node.column.name not in names:
                names.append(node.column.name)
    own = {c.name for c in columns}
    return [meta.columns[n] for n in names if n not in own]


def _count(
    status: UpdateStatus,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    path: str,
    values: bool = True,
) -> UpdateStatus:
    """Add the cells of `columns` over `rows` (and their errors) to `status`."""
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


def _none_if_missing(value: Any) -> Any:
    """pandas and CSV give NaN/NaT/NA for missing cells; a missing cell is None."""
    try:
        return None if value is not None and not isinstance(value, list | dict | tuple) and pd.isna(value) else value
    except (TypeError, ValueError):
        return value


def _rows_word(n: int) -> str:
    return "row" if n == 1 else "rows"
